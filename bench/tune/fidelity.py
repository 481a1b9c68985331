"""Pruning fidelity, measured: how well an early epoch's objective ranks configurations the way
the final objective does. Over completed trials, Kendall tau between each epoch's metric and the
trial's final value (the delivered model's, reduced as the objective says) tells whether pruning
on early epochs throws away the right trials, and which pruner and warm-up fit.

Only completed trials have a final value, so under pruning tau is measured on the survivors (a
narrower range, usually a lower tau); ``tune.pruner: auto`` measures it on a pilot run unpruned.

The rule (``recommend``), with ``e*`` the first epoch before the last whose tau >= ``TAU_HIGH``
(a trial reports its value at step = epochs trained, so a pruner's step e is "after epoch e"):
  * e* <= epochs/2 (an early epoch already ranks like the end): successive halving from epoch e*
    (min_resource = e*, reduction factor 3: a third goes on at each rung). Not Hyperband: its
    other brackets hedge against not knowing from which epoch rankings can be trusted, which
    the pilot measured; they would train ~40% of the trials to 3 x e* epochs or more for nothing;
  * a later e*: median pruning with its warm-up up to e* (n_warmup_steps = e*, the first
    decision after epoch e*);
  * no such epoch (early rankings do not predict the final one): no pruning.
With fewer than ``MIN_TRIALS`` completed trials tau is not computed."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

TAU_HIGH = 0.7
REDUCTION = 3  # successive halving's reduction factor (Optuna's Hyperband default)
MIN_TRIALS = 5
CURVE_ATTR = "bench.curve"  # a trial's objective metric per epoch (mean over its seeds)
CHOICE_ATTR = "bench.auto_pruner"  # the study's decision under tune.pruner: auto
PILOT_ATTR = "bench.pilot"  # a trial claimed before that decision: never pruned


@dataclass
class Fidelity:
    n: int  # completed trials with a full curve
    taus: list[float]  # per epoch (index 0 = epoch 1); NaN where undefined; empty under MIN_TRIALS


@dataclass
class Recommendation:
    name: str  # successive_halving | median | none (hyperband: chosen by an older bench)
    kwargs: dict[str, Any]
    reason: str

    def describe(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.kwargs.items())
        return f"{self.name}" + (f" ({args})" if args else "") + f": {self.reason}"


def measure(trials: list[Any], epochs: int) -> Fidelity:
    """Kendall tau per epoch over the completed trials of a study (``FrozenTrial``s)."""
    from scipy.stats import kendalltau

    rows = []
    for t in trials:
        curve = t.user_attrs.get(CURVE_ATTR)
        if t.state.name != "COMPLETE" or t.value is None or not curve or len(curve) < epochs:
            continue
        if all(isinstance(v, int | float) and math.isfinite(v) for v in curve[:epochs]):
            rows.append((curve[:epochs], float(t.value)))
    if len(rows) < MIN_TRIALS:
        return Fidelity(len(rows), [])
    finals = [f for _, f in rows]  # NaN where undefined (a constant epoch)
    return Fidelity(
        len(rows), [float(kendalltau([c[e] for c, _ in rows], finals).statistic) for e in range(epochs)]
    )


def recommend(fid: Fidelity, epochs: int, threshold: float = TAU_HIGH) -> Recommendation | None:
    """The module docstring's rule; None without a measurement."""
    if not fid.taus:
        return None
    early = [e + 1 for e, tau in enumerate(fid.taus[: epochs - 1]) if tau >= threshold]
    if not early:
        return Recommendation(
            "none", {}, f"no epoch before the last reaches tau >= {threshold}: early rankings do not "
            "predict the final one, so pruning would drop configurations that end up good",
        )  # fmt: skip
    e = early[0]
    tau = fid.taus[e - 1]
    if e <= epochs / 2:
        return Recommendation(
            "successive_halving", {"min_resource": e, "reduction_factor": REDUCTION},
            f"tau at epoch {e} is {tau:.2f} >= {threshold}: an early epoch already ranks like the end",
        )  # fmt: skip
    return Recommendation(
        "median", {"n_warmup_steps": e},
        f"tau first reaches {threshold} at epoch {e} ({tau:.2f}): prune only after it",
    )  # fmt: skip


def describe(fid: Fidelity, metric: str) -> str:
    if not fid.taus:
        return (
            f"pruning fidelity: not measured (Kendall tau needs {MIN_TRIALS} completed trials, have {fid.n})"
        )
    per = ", ".join(f"e{e + 1} {tau:.2f}" for e, tau in enumerate(fid.taus))
    return (
        f"pruning fidelity (Kendall tau, epoch {metric} vs final objective, {fid.n} completed trials): {per}"
    )
