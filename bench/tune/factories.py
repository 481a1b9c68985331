"""Optuna's sampler and pruner for a plan, built from the recipe's ``tune.sampler`` and
``tune.pruner`` (whose options were already bound to the classes' signatures by the schema)."""

from __future__ import annotations

from typing import Any

from bench.tune.plan import TunePlan


def quiet_optuna() -> None:
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # bench reports each trial itself
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def make_sampler(plan: TunePlan, worker_index: int, n_existing: int) -> Any:
    """Seeded per worker and per restart, so workers and continued studies do not repeat points."""
    import optuna

    cfg = plan.tune.sampler
    seed = None if cfg.seed is None else cfg.seed + 1000 * worker_index + n_existing
    kwargs = dict(cfg.kwargs)
    if cfg.name == "tpe":
        if plan.options.workers > 1 or plan.storage_spec().kind == "rdb":
            kwargs.setdefault("constant_liar", True)  # spread concurrent workers apart
        return optuna.samplers.TPESampler(seed=seed, **kwargs)
    if cfg.name == "random":
        return optuna.samplers.RandomSampler(seed=seed, **kwargs)
    if cfg.name == "grid":
        return optuna.samplers.GridSampler(
            plan.space.grid(), seed=seed, **kwargs
        )  # stops optimize when used up
    return optuna.samplers.CmaEsSampler(seed=seed, **kwargs)


def make_pruner(plan: TunePlan) -> Any:
    from bench.tune.pruners import AutoPruner, SeedPruner, build

    cfg = plan.tune.pruner
    if cfg.name == "wilcoxon":
        return SeedPruner(**cfg.kwargs)
    if cfg.name == "auto":
        return AutoPruner(**{"max_resource": plan.epochs, **cfg.kwargs})
    return build(cfg.name, dict(cfg.kwargs), plan.epochs)  # median, hyperband, none
