"""The one case Optuna's heartbeat cannot see: a worker killed between ``study.ask()`` and its
first heartbeat leaves a RUNNING trial with no heartbeat row, which ``fail_stale_trials`` skips
(optuna/storages/_rdb/storage.py: ``if len(trial.heartbeats) == 0: continue``), so it would stay
RUNNING and hold a slot of the study for ever. A worker therefore records the first beat itself
and then marks the trial claimed; a RUNNING trial without that mark, started longer ago than the
grace period, is failed and retried like a stale one. Everything else is Optuna's.

Which trials count towards ``n_trials``: every trial except those replaced by a retry (an
interrupted trial, or one whose worker died, is re-queued with the same parameters and its retry
takes its place) and surplus ones (a worker that saw a free slot as another took it: marked and
never trained), so N workers, kills and Ctrl-C still end with exactly ``n_trials``."""

from __future__ import annotations

import datetime
import warnings
from collections import Counter
from typing import Any

from bench.tune.storage import STALE_RETRIES

CLAIM_ATTR = "bench.claimed"  # system attribute: the trial's own number (a retry inherits its original's)
WORKER_ATTR = "bench.worker"
REASON_ATTR = "bench.fail_reason"
EPOCHS_ATTR = "bench.epochs_trained"  # epochs a trial trained, over all its seeds
SURPLUS_ATTR = "bench.surplus"  # system attribute: a new trial asked for when the study was full


def epochs_trained(trial: Any) -> int:
    """Recorded by the worker; older trials: one epoch per reported value."""
    return int(trial.user_attrs.get(EPOCHS_ATTR, len(trial.intermediate_values)))


def superseded(trials: list[Any]) -> set[int]:
    """Trial numbers replaced by a retry (Optuna's retry callbacks record ``retry_history``)."""
    return {n for t in trials for n in t.system_attrs.get("retry_history", [])}


def active(trials: list[Any]) -> list[Any]:
    """The trials that count: not replaced by a retry, not surplus."""
    gone = superseded(trials)
    return [t for t in trials if t.number not in gone and not t.system_attrs.get(SURPLUS_ATTR)]


def is_surplus(trials: list[Any], number: int, n_trials: int) -> bool:
    """Trial ``number`` is a new trial (not a retry) with ``n_trials`` counting trials before it.

    Why: a worker checks for a free slot (or a queued retry) before ``ask``; when another worker
    takes it in between, ``ask`` creates a new trial. Numbers are handed out once by the storage,
    so every worker agrees which trial came last, and only that one stands down."""
    this = next((t for t in trials if t.number == number), None)
    if this is None or "failed_trial" in this.system_attrs:  # a retry takes its original's place
        return False
    return sum(t.number < number for t in active(trials)) >= n_trials


def counts(trials: list[Any]) -> Counter[str]:
    """Trials per state name, not counting those replaced by a retry."""
    return Counter(t.state.name for t in active(trials))


def finished_count(trials: list[Any]) -> int:
    return sum(t.state.is_finished() for t in active(trials))


def trial_id(storage: Any, study_name: str, number: int) -> int:
    """The storage's id of trial ``number`` (public storage API; ``Trial`` does not expose it)."""
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study_name), number)


def claim(storage: Any, study_name: str, trial: Any, worker_id: str) -> None:
    """First heartbeat, then the mark: a marked trial always has a heartbeat row."""
    tid = trial_id(storage, study_name, trial.number)
    if hasattr(storage, "record_heartbeat"):  # an RDB storage (a journal keeps none)
        storage.record_heartbeat(tid)
    trial.set_user_attr(WORKER_ATTR, worker_id)
    storage.set_trial_system_attr(tid, CLAIM_ATTR, trial.number)


def retry(study: Any, storage: Any, frozen: Any, reason: str, max_retry: int | None) -> None:
    """Fail a trial that will not finish (if still RUNNING) and queue its parameters again with
    Optuna's ``RetryHeartbeatStaleTrialCallback`` (its retry takes its place in the count)."""
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    if frozen.number in superseded(study.get_trials(deepcopy=False)):
        return  # another worker retried it already
    tid = trial_id(storage, study.study_name, frozen.number)
    if frozen.state == TrialState.RUNNING:
        try:
            storage.set_trial_user_attr(tid, REASON_ATTR, reason)
            if not storage.set_trial_state_values(tid, TrialState.FAIL):
                return
        except optuna.exceptions.UpdateFinishedTrialError:
            return  # another worker finished or failed it meanwhile: it retries it
        frozen = storage.get_trial(tid)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "experimental" since Optuna 2.8
        RetryHeartbeatStaleTrialCallback(max_retry=max_retry)(study, frozen)


def sweep(study: Any, storage: Any, grace: float) -> list[str]:
    """Optuna's sweep of stale trials (each retried by the storage's ``RetryHeartbeatStaleTrialCallback``),
    then bench's of RUNNING trials whose worker died before marking them claimed; one note per trial failed."""
    import optuna
    from optuna.trial import TrialState

    def running() -> list[Any]:
        return study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))

    before = {t.number for t in running()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "experimental" since Optuna 2.9
        optuna.storages.fail_stale_trials(study)  # a no-op on a journal (no heartbeats there)
    gone = sorted(before - {t.number for t in running()})
    notes = [f"trial {n}: its worker stopped sending heartbeats; failed and retried" for n in gone]
    now = datetime.datetime.now()
    for t in running():
        if (
            t.system_attrs.get(CLAIM_ATTR) != t.number
            and (now - (t.datetime_start or now)).total_seconds() > grace
        ):
            retry(study, storage, t, "its worker died while claiming it", STALE_RETRIES)
            notes.append(f"trial {t.number}: its worker died while claiming it; failed and retried")
    return notes
