"""``bench run RECIPE... [key=value ...]``"""

from __future__ import annotations

import argparse
import signal
import sys

from bench.commands.common import add_recipe_arguments, split_recipes_and_overrides


def configure(parser: argparse.ArgumentParser) -> None:
    add_recipe_arguments(parser, many=True)
    parser.add_argument("--dry-run", action="store_true", help="print the expanded variants and exit")
    parser.add_argument("--force", action="store_true", help="re-run variants that already finished")


def main(args: argparse.Namespace) -> int:
    from bench import api

    recipes, overrides = split_recipes_and_overrides(list(args.recipe) + list(args.overrides))
    # Validate every recipe and every variant before anything trains.
    loaded = [api.load_recipe(path, overrides, args.overlay) for path in recipes]
    if args.dry_run:
        from bench.estimate import estimate_line

        for recipe in loaded:
            print(variants_table(recipe))
            print(estimate_line(recipe, args.results_dir, force=args.force))
        return 0
    from bench.runner import Terminated

    try:
        # Data sets and weights files load per recipe before anything of it is recorded (an
        # earlier recipe of the same command may produce the weights a later one starts from).
        frame = api.run(
            loaded, results_dir=args.results_dir, tracking_uri=args.tracking_uri, force=args.force
        )
    except Terminated:
        print(
            "terminated (SIGTERM): finished variants are recorded; run the same command again to resume",
            file=sys.stderr,
        )
        return 128 + signal.SIGTERM
    failed = int((frame["status"] == "failed").sum()) if "status" in frame else 0
    return 1 if failed else 0


def variants_table(recipe) -> str:
    import pandas as pd

    from bench.recipe.matrix import axis_label

    rows = []
    for v in recipe.variants:
        keys = list(v.axes)
        row = {"variant": v.name, "seed": v.seed, "run_key": v.run_key}
        row.update(
            {
                axis_label(k, keys): (val.get("name") if isinstance(val, dict) else val)
                for k, val in v.axes.items()
            }
        )
        rows.append(row)
    frame = pd.DataFrame(rows)
    header = (
        f"{recipe.source}: {recipe.name}, {len(recipe.variants)} runs ({len(recipe.recipe.seeds)} seed(s))"
    )
    return header + "\n" + frame.to_string(index=False)
