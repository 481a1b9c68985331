"""Arguments shared by the subcommands that read a recipe."""

from __future__ import annotations

import argparse
import os


def add_recipe_arguments(parser: argparse.ArgumentParser, *, many: bool = False) -> None:
    parser.add_argument(
        "recipe", nargs="+" if many else None, help="recipe YAML file" + ("(s), run in order" if many else "")
    )
    parser.add_argument(
        "overrides", nargs="*", default=[], help="dotted overrides: train.epochs=2 data.subset=2000 ~key"
    )
    parser.add_argument(
        "--overlay", action="append", default=[], help="YAML merged over the recipe (e.g. a tuned best.yaml)"
    )
    add_store_arguments(parser)


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """Where results and the MLflow store live."""
    parser.add_argument(
        "--results-dir",
        default=os.environ.get("BENCH_RESULTS_DIR", "results"),
        help="output folder (default: results/)",
    )
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else results/mlflow.db)",
    )


def split_recipes_and_overrides(items: list[str]) -> tuple[list[str], list[str]]:
    """``bench run a.yaml b.yaml train.epochs=1``: files first, then key=value overrides."""
    recipes = [i for i in items if "=" not in i and not i.startswith("~")]
    overrides = [i for i in items if "=" in i or i.startswith("~")]
    return recipes, overrides
