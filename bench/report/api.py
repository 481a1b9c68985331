"""What ``bench report`` and the Python API share: from a recipe (file or loaded) to the MLflow
experiment, store and settings to report on, and the report's tables as DataFrames."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import BenchError


@dataclass
class Target:
    """One study to report on."""

    name: str
    experiment: str
    uri: str
    order: list[str] | None = None
    baseline: str | None = None
    target_acc: float | None = None
    min_effect: float = 0.005


def resolve(
    recipe: Any = None,
    *,
    overrides: list[str] | tuple[str, ...] = (),
    overlays: list[str] | tuple[str, ...] = (),
    experiment: str | None = None,
    results_dir: str | Path = "results",
    tracking_uri: str | None = None,
    variance: bool = False,
) -> Target:
    """``recipe``: a path, a ``LoadedRecipe``, or None with ``experiment`` given. ``variance``:
    refuse (exit 2) a recipe without a crossed init × data design, before any run is read."""
    from bench.tracking import mlflow_store as store

    if recipe is None:
        if not experiment:
            raise BenchError("give a recipe file or --experiment NAME")
        return Target(experiment, experiment, store.default_tracking_uri(results_dir, tracking_uri))
    if isinstance(recipe, (str, Path)):
        from bench.recipe.load import load_recipe

        recipe = load_recipe(recipe, list(overrides), list(overlays))
    if variance:
        from bench.report.variance import require_crossed

        require_crossed(recipe)
    r = recipe.recipe
    return Target(
        name=recipe.name,
        experiment=experiment or recipe.experiment,
        uri=store.default_tracking_uri(results_dir, tracking_uri or r.tracking.uri),
        order=list(dict.fromkeys(v.group for v in recipe.variants)),
        baseline=r.baseline,
        target_acc=r.target_acc,
        min_effect=r.report.min_effect,
    )


def load_other(spec: str | Path, *, results_dir: str | Path = "results", tracking_uri: str | None = None):
    """A study to set beside this one: a recipe file (read from MLflow) or a results folder
    holding an earlier report (``results/<recipe>``, e.g. copied from a GPU machine)."""
    from bench.report import compare

    path = Path(spec)
    if path.is_dir():
        return compare.from_results_dir(path)
    if not path.is_file():
        raise BenchError(f"--compare {spec}: not a recipe file or a results folder")
    from bench.recipe.load import load_recipe

    loaded = load_recipe(path)  # its own store first: the other study may live elsewhere
    target = resolve(loaded, results_dir=results_dir, tracking_uri=loaded.recipe.tracking.uri or tracking_uri)
    return _built(target)[1]


def _built(target: Target, **settings):
    """``build_report`` on the target's store and settings (``settings`` override them), and the
    result as a ``compare.Study``."""
    from bench.report.build import as_study, build_report
    from bench.tracking import mlflow_store as store

    settings = {"experiment": target.experiment, "group_order": target.order, "baseline": target.baseline,
                "target_acc": target.target_acc, "min_effect": target.min_effect, **settings}  # fmt: skip
    built = build_report(store.open_store(target.uri, create=False), **settings)
    return built, as_study(target.name, target.uri, built.tables)


def report_tables(
    recipe: Any = None,
    results_dir: str | Path = "results",
    tracking_uri: str | None = None,
    *,
    overrides: list[str] | tuple[str, ...] = (),
    experiment: str | None = None,
    baseline: str | None = None,
    memory_front: bool | None = None,
    compare: list[str | Path] | tuple[str | Path, ...] = (),
) -> dict[str, pd.DataFrame]:
    """The report's tables, without writing files: ``variants``, ``baseline``, ``axes``,
    ``pareto``, ``excluded``, ``provenance``, ``runs``, ``history``, and ``compare:<study>`` per
    study in ``compare`` (recipe files or results folders)."""
    from bench.report.compare import side_by_side

    target = resolve(recipe, overrides=overrides, experiment=experiment, results_dir=results_dir,
                     tracking_uri=tracking_uri)  # fmt: skip
    built, this = _built(target, baseline=baseline or target.baseline, memory_front=memory_front)
    frames = built.frames()
    for spec in compare:
        other = load_other(spec, results_dir=results_dir, tracking_uri=tracking_uri)
        frames[f"compare:{other.name}"] = side_by_side(this, other)
    return frames
