"""The Python API, for notebooks and scripts: the same validation, recording and outputs as the
command line (the CLI calls these functions), with results as pandas DataFrames.

    import bench
    runs = bench.run("recipes/smoke.yaml", ["train.epochs=1"])   # one row per variant and seed
    tables = bench.report("recipes/smoke.yaml")                   # {"variants": DataFrame, ...}

Heavy libraries load on first call, not at ``import bench``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from bench.recipe.load import LoadedRecipe


def use_results_dir(results_dir: str | Path) -> None:
    """Recipes name earlier outputs as ``${BENCH_RESULTS_DIR}/...`` (e.g. pretrained weights)."""
    os.environ["BENCH_RESULTS_DIR"] = os.path.abspath(results_dir)


def load_recipe(
    path: str | Path, overrides: Sequence[str] = (), overlays: Sequence[str | Path] = (), *,
    results_dir: str | Path | None = None,
) -> LoadedRecipe:  # fmt: skip
    """Load, override and validate a recipe; every variant is expanded and checked. Raises
    ``bench.errors.RecipeError`` naming the file and key, as ``bench run`` exits 2 with it."""
    from bench.recipe.load import load_recipe as load

    if results_dir is not None:
        use_results_dir(results_dir)
    return load(str(path), list(overrides), [str(o) for o in overlays])


def _loaded(recipes: Any, overrides: Sequence[str], overlays: Sequence[str | Path]) -> list[LoadedRecipe]:
    from bench.recipe.load import LoadedRecipe

    items = [recipes] if isinstance(recipes, str | Path | LoadedRecipe) else list(recipes)
    return [r if isinstance(r, LoadedRecipe) else load_recipe(r, overrides, overlays) for r in items]


def run(
    recipes: str | Path | LoadedRecipe | Iterable[str | Path | LoadedRecipe],
    overrides: Sequence[str] = (),
    *,
    overlays: Sequence[str | Path] = (),
    results_dir: str | Path = "results",
    tracking_uri: str | None = None,
    force: bool = False,
    live_progress: bool | None = None,
) -> pd.DataFrame:
    """``bench run``: train and record every variant of each recipe, in order (a later recipe may
    start from weights an earlier one saves). All recipes are validated before anything trains;
    each one's data and weights are checked before it records anything. Returns the rows of
    ``results/<recipe>/runs.csv`` of every recipe (column ``recipe`` says which)."""
    import pandas as pd

    from bench.preflight import preflight
    from bench.runner import run_recipe

    use_results_dir(results_dir)
    loaded = _loaded(recipes, overrides, overlays)
    frames = []
    for recipe in loaded:
        preflight(recipe)
        frame = run_recipe(recipe, results_dir=results_dir, tracking_uri=tracking_uri, force=force,
                           live_progress=live_progress)  # fmt: skip
        if frame is not None:
            frames.append(frame.assign(recipe=recipe.name))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def tune_options(recipe: str | Path, overrides: Sequence[str] = (), **kwargs: Any) -> Any:
    """``TuneOptions`` as ``bench tune`` builds them (``n_trials``/``timeout`` become overrides)."""
    from bench.errors import RecipeError
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


def tune(
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
    log_artifacts: bool = True,
) -> Any:
    """``bench report``: the report object (``report.md`` written, plots logged to MLflow);
    ``requested_baseline`` on it is the baseline asked for (argument, else the recipe's)."""
    from bench.errors import BenchError
    from bench.report.build import make_report
    from bench.results import recipe_dir
    from bench.tracking import mlflow_store as store

    if recipe is None and not experiment:
        raise BenchError("give a recipe file or --experiment NAME")
    use_results_dir(results_dir)
    name, uri_hint, order, recipe_baseline, target = experiment, None, None, None, None
    if recipe is not None:
        loaded = _loaded(recipe, overrides, overlays)[0]
        name = loaded.name
        experiment = experiment or loaded.recipe.tracking.experiment or loaded.name
        uri_hint = loaded.recipe.tracking.uri
        order = list(dict.fromkeys(v.group for v in loaded.variants))
        recipe_baseline, target = loaded.recipe.baseline, loaded.recipe.target_acc
    uri = store.default_tracking_uri(results_dir, tracking_uri or uri_hint)
    client = store.open_store(uri)
    built = make_report(
        client, experiment=experiment, out_dir=recipe_dir(results_dir, name), tracking_uri=uri,
        recipe_name=name, group_order=order, baseline=baseline or recipe_baseline, target_acc=target,
        log_artifacts=log_artifacts,
    )  # fmt: skip
    built.requested_baseline = baseline or recipe_baseline
    return built


def report_tables(report: Any) -> dict[str, pd.DataFrame]:
    """The report's tables by name, plus its ``runs``. (The one place that knows the report's
    shape: switch to ``bench.report``'s own table function when it has one.)"""
    import dataclasses

    import pandas as pd

    tables = {f.name: getattr(report.tables, f.name) for f in dataclasses.fields(report.tables)}
    tables["runs"] = report.runs
    return {name: value for name, value in tables.items() if isinstance(value, pd.DataFrame)}


def report(
    recipe: str | Path | None = None, overrides: Sequence[str] = (), **kwargs: Any
) -> dict[str, pd.DataFrame]:
    """``bench report``: variants over seeds against the baseline, per axis, Pareto fronts.
    Writes ``results/<recipe>/report.md`` as the CLI does; returns its tables as DataFrames
    (``variants``, ``baseline``, ``axes``, ``pareto``, ``excluded``, ``runs``). Keyword
    arguments: ``overlays``, ``experiment``, ``baseline``, ``results_dir``, ``tracking_uri``,
    ``log_artifacts``."""
    return report_tables(build_report(recipe, overrides, **kwargs))
