"""Which trials count towards ``n_trials``: every trial except those replaced by a retry (an
interrupted trial, or one whose worker died, is re-queued with the same parameters and its retry
takes its place), so N workers, kills and Ctrl-C still end with exactly ``n_trials``."""

from __future__ import annotations

from collections import Counter
from typing import Any

EPOCHS_ATTR = "bench.epochs_trained"  # epochs a trial trained, over all its seeds


def epochs_trained(trial: Any) -> int:
    """Recorded by the worker; older trials: one epoch per reported value."""
    return int(trial.user_attrs.get(EPOCHS_ATTR, len(trial.intermediate_values)))


def superseded(trials: list[Any]) -> set[int]:
    """Trial numbers replaced by a retry (Optuna's retry callbacks record ``retry_history``)."""
    return {n for t in trials for n in t.system_attrs.get("retry_history", [])}


def active(trials: list[Any]) -> list[Any]:
    gone = superseded(trials)
    return [t for t in trials if t.number not in gone]


def counts(trials: list[Any]) -> Counter[str]:
    """Trials per state name, not counting those replaced by a retry."""
    return Counter(t.state.name for t in active(trials))


def finished_count(trials: list[Any]) -> int:
    c = counts(trials)
    return c["COMPLETE"] + c["PRUNED"] + c["FAIL"]
