"""The Python API, for notebooks and scripts: the same validation, recording and outputs as the
command line (the CLI calls these functions), with results as pandas DataFrames.

    import bench
    runs = bench.run("recipes/smoke.yaml", ["train.epochs=1"])   # one row per variant and seed
    tables = bench.report_recipe("recipes/smoke.yaml")            # {"variants": DataFrame, ...}

Heavy libraries load on first call, not at ``import bench``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.errors import BenchError, CheckpointError, RecipeError

if TYPE_CHECKING:
    import pandas as pd

    from bench.recipe.load import LoadedRecipe


def use_results_dir(results_dir: str | Path) -> None:
    """Recipes name earlier outputs as ``${BENCH_RESULTS_DIR}/...`` (e.g. pretrained weights)."""
    os.environ["BENCH_RESULTS_DIR"] = os.path.abspath(results_dir)


def use_emulated_bf16(policy: str | None) -> None:
    """amp_bf16 on a CPU without native bf16: ``skip`` or ``run``; the variable reaches every child."""
    from bench.measure.hardware import EMULATED_BF16_ENV, emulated_bf16_policy

    if policy is not None:
        os.environ[EMULATED_BF16_ENV] = policy
    emulated_bf16_policy()  # RecipeError naming the allowed values


def load_recipe(
    path: str | Path, overrides: Sequence[str] = (), overlays: Sequence[str | Path] = (), *,
    results_dir: str | Path | None = None, full: bool = True,
) -> LoadedRecipe:  # fmt: skip
    """Load, override and validate a recipe; every variant is expanded and checked (components
    bound to their signatures; ``full=False``: without torch, as ``--dry-run``). Raises
    ``bench.errors.RecipeError`` naming the file and key, as ``bench run`` exits 2 with it."""
    from bench.validate.recipe import load_validated

    if results_dir is not None:
        use_results_dir(results_dir)
    return load_validated(str(path), list(overrides), [str(o) for o in overlays], full=full)


def run(
    recipes: str | Path | LoadedRecipe | Iterable[str | Path | LoadedRecipe],
    overrides: Sequence[str] = (),
    *,
    overlays: Sequence[str | Path] = (),
    results_dir: str | Path = "results",
    tracking_uri: str | None = None,
    force: bool = False,
    live_progress: bool | None = None,
    executor: Any = None,
    max_attempts: int = 3,
    order: str = "seed-blocks",
    order_seed: int | None = None,
    until_decided: Any = None,
    record_skips: bool = False,
    emulated_bf16: str | None = None,
) -> pd.DataFrame:
    """``bench run``: train and record every variant of each recipe, in order (a later recipe may
    start from weights an earlier one saves). All recipes are validated before anything trains;
    each one's data and weights are checked before it records anything. Returns the rows of
    ``results/<recipe>/runs.csv`` of every recipe (column ``recipe`` says which). ``order``: the run
    order (bench/execution/order.py), shuffled by ``order_seed`` (default: from the recipe name).
    ``until_decided``: a ``bench.execution.until_decided.UntilDecided``: seeds added where undecided.
    A recipe whose every run would be skipped here for lack of a device (amp_fp16 without CUDA) is
    refused (RecipeError) unless ``record_skips``; on Ray the cluster's devices decide, not this one's.
    ``emulated_bf16``: ``"skip"`` or ``"run"``, as ``bench run --emulated-bf16`` (default: skip).
    A recipe that another live command runs is refused at once (RecipeBusy, exit 4), nothing changed."""
    import contextlib

    import pandas as pd

    from bench.execution.owner import owning
    from bench.execution.runner import exit_code, run_recipe
    from bench.recipe.load import LoadedRecipe
    from bench.validate.preflight import check_devices, preflight

    use_results_dir(results_dir)
    use_emulated_bf16(emulated_bf16)
    items = [recipes] if isinstance(recipes, str | Path | LoadedRecipe) else list(recipes)
    loaded = [r if isinstance(r, LoadedRecipe) else load_recipe(r, overrides, overlays) for r in items]
    if until_decided is not None:
        from bench.execution.until_decided import check

        for recipe in loaded:
            check(recipe, until_decided)
    frames, codes = [], []
    if executor is None and not record_skips:
        for recipe in loaded:  # every recipe, before the first one records anything
            check_devices(recipe)
    with contextlib.ExitStack() as owned:
        for name in dict.fromkeys(r.name for r in loaded):  # every recipe owned for the whole command
            owned.enter_context(owning(results_dir, name))  # or RecipeBusy (exit 4) before any change
        for recipe in loaded:
            try:
                preflight(recipe)
            except CheckpointError as exc:
                raise after_failed(exc, [r.name for r, code in zip(loaded, codes) if code]) from None
            runner = run_recipe(recipe, results_dir=results_dir, tracking_uri=tracking_uri, force=force,
                                live_progress=live_progress, executor=executor, max_attempts=max_attempts,
                                order=order, order_seed=order_seed, until=until_decided)  # fmt: skip
            codes.append(runner.exit_code())
            if runner.frame is not None:
                frames.append(runner.frame.assign(recipe=recipe.name))
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    out.attrs["exit_code"] = exit_code(codes)  # what `bench run` exits with (see `bench run --help`)
    return out


def after_failed(exc: Exception, failed: list[str]) -> Exception:
    """A start weights file missing because a recipe earlier in the command, which writes it, did
    not finish: say so (exit 1, a variant failed), not "run the recipe that produces it first"."""
    text = str(exc)
    writers = [name for name in failed if f"/{name}/weights/" in text]
    if not writers:
        return exc
    return BenchError(
        f"{text.split(' (a bench run writes')[0]}: recipe '{writers[0]}', earlier in this command, writes it and "
        "did not finish every run (see above); fix that, and the same command resumes"
    )


def tune_options(recipe: str | Path, overrides: Sequence[str] = (), **kwargs: Any) -> Any:
    """``TuneOptions`` as ``bench tune`` builds them (``n_trials``/``timeout`` become overrides)."""
    from bench.tune.study import TuneOptions

    overrides = list(overrides)
    for key in ("n_trials", "timeout"):
        if kwargs.get(key) is not None:
            overrides.append(f"tune.{key}={kwargs[key]}")
        kwargs.pop(key, None)
    if kwargs.get("workers", 1) < 1:
        raise RecipeError("--workers must be at least 1", source="--workers")
    kwargs["overlays"] = [str(o) for o in kwargs.get("overlays", ())]
    kwargs["results_dir"] = str(kwargs.get("results_dir", "results"))
    return TuneOptions(recipe=str(recipe), overrides=overrides, **kwargs)


def tune_recipe(
    recipe: str | Path,
    overrides: Sequence[str] = (),
    *,
    overlays: Sequence[str | Path] = (),
    results_dir: str | Path = "results",
    tracking_uri: str | None = None,
    storage: str | None = None,
    workers: int = 1,
    study: str | None = None,
    n_trials: int | None = None,
    timeout: float | None = None,
) -> pd.DataFrame:
    """``bench tune``: run (or continue) the recipe's Optuna study. Returns its trials
    (``results/<study>/trials.csv``); ``best.yaml`` beside it is the overlay for ``run``."""
    import pandas as pd

    from bench.tune.study import build_plan, run_study

    use_results_dir(results_dir)
    options = tune_options(recipe, overrides, overlays=overlays, results_dir=results_dir, tracking_uri=tracking_uri,
                           storage=storage, workers=workers, study=study, n_trials=n_trials, timeout=timeout)  # fmt: skip
    run_study(options)
    trials = build_plan(options, quiet=True).out_dir / "trials.csv"
    return pd.read_csv(trials) if trials.exists() else pd.DataFrame()


def build_report(
    recipe: str | Path | None = None,
    overrides: Sequence[str] = (),
    *,
    overlays: Sequence[str | Path] = (),
    experiment: str | None = None,
    baseline: str | None = None,
    results_dir: str | Path = "results",
    tracking_uri: str | None = None,
    memory_front: bool | None = None,
    compare: Sequence[str | Path] = (),
    log_artifacts: bool = True,
    variance: bool = False,
) -> Any:
    """``bench report``: writes ``report.md``/``report.html`` (plots logged to MLflow) and returns
    the report object; ``requested_baseline`` on it is the baseline asked for. ``variance``: add
    the init / data / residual variance split (needs a recipe with init_seeds × data_seeds)."""
    from bench.execution.results import recipe_dir
    from bench.report.api import load_other, resolve
    from bench.report.build import make_report
    from bench.tracking import mlflow_store as store

    use_results_dir(results_dir)
    target = resolve(
        recipe, overrides=list(overrides), overlays=[str(o) for o in overlays], experiment=experiment,
        results_dir=results_dir, tracking_uri=tracking_uri, variance=variance,
    )  # fmt: skip
    if baseline and target.order and baseline not in target.order:  # a typo fell back to another baseline
        raise RecipeError(
            f"--baseline {baseline}: no such variant; variants: {', '.join(target.order)}", source=str(recipe)
        )
    others = [load_other(o, results_dir=results_dir, tracking_uri=tracking_uri) for o in compare]
    built = make_report(
        store.open_store(target.uri, create=False), experiment=target.experiment, out_dir=recipe_dir(results_dir, target.name),
        tracking_uri=target.uri, recipe_name=target.name, group_order=target.order,
        baseline=baseline or target.baseline, target_acc=target.target_acc, min_effect=target.min_effect,
        memory_front=memory_front, others=others, log_artifacts=log_artifacts, variance=variance,
    )  # fmt: skip
    built.requested_baseline = baseline or target.baseline
    return built


def report_recipe(
    recipe: str | Path | None = None, overrides: Sequence[str] = (), **kwargs: Any
) -> dict[str, pd.DataFrame]:
    """``bench report``: variants over seeds against the baseline, per axis, Pareto fronts.
    Writes ``results/<recipe>/report.md`` and ``report.html`` as the CLI does; returns its tables
    as DataFrames (``variants``, ``baseline``, ``axes``, ``pareto``, ``excluded``, ``provenance``,
    ``runs``, ``compare:<study>`` per compared study, and ``variance`` with ``variance=True``).
    Keyword arguments: those of ``build_report``."""
    import dataclasses

    import pandas as pd

    built = build_report(recipe, overrides, **kwargs)
    tables = {f.name: getattr(built.tables, f.name) for f in dataclasses.fields(built.tables)}
    tables["runs"] = built.runs
    tables.update({f"compare:{name}": frame for name, frame in built.comparisons.items()})
    if built.variance:  # variance=True: the table of results/<recipe>/report/variance.csv
        from bench.report.build import VARIANCE_METRIC
        from bench.report.variance import to_frame

        tables["variance"] = to_frame(built.variance, VARIANCE_METRIC)
    return {name: value for name, value in tables.items() if isinstance(value, pd.DataFrame)}
