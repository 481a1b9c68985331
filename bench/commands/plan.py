"""``bench plan RECIPE``: plot every variant's LR schedule per param group and step, without
training, and warn about combinations known to be wrong."""

from __future__ import annotations

import argparse

from bench.commands.common import add_recipe_arguments


def configure(parser: argparse.ArgumentParser) -> None:
    add_recipe_arguments(parser)
    parser.add_argument("--steps-per-epoch", type=int, default=None,
                        help="optimizer steps per epoch (default: from data.subset or the data set's size)")  # fmt: skip
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when any warning is raised")


def main(args: argparse.Namespace) -> int:
    from bench.execution.results import recipe_dir
    from bench.plan.schedule import plan_recipe, write_plan
    from bench.validate.recipe import load_validated

    loaded = load_validated(args.recipe, args.overrides, args.overlay)
    plans = plan_recipe(loaded, override_steps=args.steps_per_epoch)
    csv, png, warn_csv = write_plan(plans, recipe_dir(args.results_dir, loaded.name))
    count = 0
    for plan in plans:
        total = plan.epochs * plan.steps_per_epoch
        print(f"{plan.group}: {plan.epochs} epochs x {plan.steps_per_epoch} steps = {total} steps")
        for w in plan.warnings:
            count += 1
            print(f"  warning: {w}")
    print(f"wrote {png}, {csv} and {warn_csv} ({count} warning(s))")
    return 1 if args.strict and count else 0
