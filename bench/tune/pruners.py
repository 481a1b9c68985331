"""Bench's own pruners, named in a recipe's ``tune.pruner``: ``wilcoxon`` (``SeedPruner``: across
the seeds of a multi-seed trial, whose step ``i`` is its value on tuning seed ``i``) and ``auto``
(``AutoPruner``: a pilot, then the pruner that Kendall tau per epoch recommends)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna

from bench.tune.fidelity import CHOICE_ATTR, MIN_TRIALS, PILOT_ATTR, describe, measure, recommend


class SeedPruner(optuna.pruners.BasePruner):
    """Prune a multi-seed trial when it is worse than the best trial on the same seeds, by either rule:

    * Optuna's ``WilcoxonPruner(p_threshold, n_startup_steps)``: the one-sided signed-rank test on
      the per-seed differences (exact p: 0.25 at 2 seeds, 0.125 at 3, 0.0625 at 4, so it needs
      ``p_threshold`` above that and enough seeds);
    * clearly worse, usable from the first seed: every paired difference is worse and their mean
      gap exceeds max(``noise_factor`` x the best trial's seed-to-seed standard deviation,
      ``min_gap``) (in the objective's units; it needs the best trial's values on 2+ seeds).
    """

    def __init__(
        self,
        p_threshold: float = 0.1,
        n_startup_steps: int = 2,
        noise_factor: float = 3.0,
        min_gap: float = 0.02,
    ):
        self.wilcoxon = optuna.pruners.WilcoxonPruner(
            p_threshold=p_threshold, n_startup_steps=n_startup_steps
        )
        self.noise_factor, self.min_gap = noise_factor, min_gap

    def prune(self, study: Any, trial: Any) -> bool:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self.wilcoxon.prune(study, trial):
                return True
        try:
            best = study.best_trial
        except ValueError:
            return False
        ours, theirs = trial.intermediate_values, best.intermediate_values
        common = [s for s in ours if s in theirs]
        if not common or len(theirs) < 2 or best.number == trial.number:
            return False
        sign = 1.0 if study.direction.name == "MAXIMIZE" else -1.0
        gaps = np.array([sign * (theirs[s] - ours[s]) for s in common])  # > 0: this trial is worse
        noise = self.noise_factor * np.std(list(theirs.values()), ddof=1)
        return bool(gaps.min() > 0 and gaps.mean() > max(noise, self.min_gap))


class Halving(optuna.pruners.BasePruner):
    """Successive halving from epoch ``min_resource``: at each rung (step ``min_resource`` x
    ``reduction_factor``^k) a trial goes on only if it is in the best 1/``reduction_factor`` of every
    trial that trained that far (itself included; the best one while there are fewer than
    ``reduction_factor``, as Optuna's rule has it). Not Optuna's ``SuccessiveHalvingPruner``: that
    ranks a trial only against values it recorded while asked about other trials, and no one asks
    about the pilot's unpruned trials (nor can anything be recorded on a finished trial), so right
    after the pilot a trial worse than all of it would pass every rung. Here the rung's values are
    the trials' own reports at that step, the pilot's included."""

    def __init__(self, min_resource: int = 1, reduction_factor: int = 3):
        if min_resource < 1 or reduction_factor < 2:
            raise ValueError("min_resource must be >= 1 and reduction_factor >= 2")
        self.min_resource, self.reduction_factor = min_resource, reduction_factor

    def prune(self, study: Any, trial: Any) -> bool:
        from optuna.trial import TrialState

        step, rung = trial.last_step, self.min_resource
        while step is not None and rung < step:
            rung *= self.reduction_factor
        if rung != step:  # not a rung (min_resource x reduction_factor^k): no decision
            return False
        value = trial.intermediate_values[step]
        if not math.isfinite(value):
            return True
        reached = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        others = [t.intermediate_values[step] for t in study.get_trials(deepcopy=False, states=reached)
                  if t.number != trial.number and step in t.intermediate_values]  # fmt: skip
        sign = 1.0 if study.direction.name == "MAXIMIZE" else -1.0
        ranked = sorted((sign * v for v in [*others, value] if math.isfinite(v)), reverse=True)
        keep = max(len(ranked) // self.reduction_factor, 1)
        return sign * value < ranked[keep - 1]


def build(name: str, kwargs: dict[str, Any], epochs: int) -> Any:
    """The pruner a recipe's ``tune.pruner`` names (``epochs``: a trial's full resource)."""
    if name == "wilcoxon":
        return SeedPruner(**kwargs)
    if name == "auto":
        return AutoPruner(**{"max_resource": epochs, **kwargs})
    if name == "successive_halving":
        return Halving(**kwargs)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(**{"max_resource": epochs, **kwargs})
    if name == "median":
        return optuna.pruners.MedianPruner(**kwargs)
    return optuna.pruners.NopPruner()


class AutoPruner(optuna.pruners.BasePruner):
    """``tune.pruner: auto``. The first ``pilot_trials`` completed trials run unpruned (every trial
    claimed before the decision is marked a pilot); at the first claim after them, ``decide`` measures
    Kendall tau per epoch on them and records the recommended pruner in the study, where every
    worker and every later command reads it. Trials claimed after that are pruned by it."""

    def __init__(self, pilot_trials: int = 6, threshold: float = 0.7, max_resource: int | None = None):
        if pilot_trials < MIN_TRIALS:
            raise ValueError(f"pilot_trials must be at least {MIN_TRIALS} (Kendall tau needs them)")
        self.pilot_trials, self.threshold, self.epochs = pilot_trials, threshold, max_resource
        self.inner: Any = None

    def prune(self, study: Any, trial: Any) -> bool:
        if trial.user_attrs.get(PILOT_ATTR):
            return False
        if self.inner is None:
            choice = study.user_attrs.get(CHOICE_ATTR)
            if choice is None:
                return False
            self.inner = build(choice["name"], choice["kwargs"], self.epochs or 1)
        return self.inner.prune(study, trial)

    def decide(self, study: Any, epochs: int) -> str | None:
        """Call it before a claim: a note when it decided just now (workers deciding at once
        write the same choice)."""
        if CHOICE_ATTR in study.user_attrs:
            return None
        trials = study.get_trials(deepcopy=False)
        if sum(t.state.name == "COMPLETE" for t in trials) < self.pilot_trials:
            return None
        fid = measure(trials, epochs)
        rec = recommend(fid, epochs, self.threshold)
        if rec is None:  # the pilot's trials lack curves (e.g. written by an older bench)
            return None
        study.set_user_attr(
            CHOICE_ATTR, {"name": rec.name, "kwargs": rec.kwargs, "taus": fid.taus, "pilot": fid.n}
        )
        return f"pruner auto: {describe(fid, 'objective')}; chose {rec.describe()}"
