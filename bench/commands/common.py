"""Arguments shared by the subcommands that read a recipe."""

from __future__ import annotations

import argparse
import os
import re

from bench.errors import RecipeError

# What a dotted override key looks like (``train.epochs``); a recipe path has a '/' or a suffix.
_KEY_LIKE = re.compile(r"~?[A-Za-z_]\w*(\.\w+)*")


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


def sort_positionals(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Overrides may stand before, between or after recipe files: re-sort what argparse assigned by
    position into ``recipe`` (files) and ``overrides`` (``key=value``, ``~key``)."""
    if not hasattr(args, "recipe") or not hasattr(args, "overrides"):
        return
    many = isinstance(args.recipe, list)
    given = (args.recipe if many else [args.recipe] if args.recipe else []) + list(args.overrides)
    recipes = [i for i in given if "=" not in i and not i.startswith("~")]
    args.overrides = [i for i in given if "=" in i or i.startswith("~")]
    for item in recipes:
        # A missing path that looks like a dotted key is an override without its ``=value``.
        if not os.path.exists(item) and _KEY_LIKE.fullmatch(item) and not item.endswith((".yaml", ".yml")):
            raise RecipeError(
                f"no recipe file '{item}'; it looks like an override without a value: write {item}=VALUE "
                "(or ~KEY to delete a key)",
                source="command line",
            )
    if many:
        args.recipe = recipes
    elif len(recipes) > 1:
        parser.error(
            f"one recipe file, got {len(recipes)}: {' '.join(recipes)} (overrides look like key=value)"
        )
    else:
        args.recipe = recipes[0] if recipes else None
    required = next((a.nargs in (None, "+") for a in parser._actions if a.dest == "recipe"), False)
    if required and not recipes:
        parser.error("the recipe file is required (overrides alone were given)")
