"""``bench run RECIPE... [key=value ...]``"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from bench.commands.common import add_recipe_arguments, split_recipes_and_overrides


def configure(parser: argparse.ArgumentParser) -> None:
    add_recipe_arguments(parser, many=True)
    parser.add_argument("--dry-run", action="store_true", help="print the expanded variants and exit")
    parser.add_argument("--force", action="store_true", help="re-run variants that already finished")
    parser.add_argument(
        "--emulated-bf16", choices=("run", "skip"), default="run",
        help="amp_bf16 variants on a CPU without native bf16 (20-40x slower): run them, or record them as "
        "skipped with the reason (a machine with native bf16 runs them later)",
    )  # fmt: skip


def main(args: argparse.Namespace) -> int:
    from bench.recipe.load import load_recipe

    recipes, overrides = split_recipes_and_overrides(list(args.recipe) + list(args.overrides))
    # Validate every recipe and every variant before anything trains.
    loaded = [load_recipe(path, overrides, args.overlay) for path in recipes]
    os.environ["BENCH_EMULATED_BF16"] = args.emulated_bf16  # read by the precision trick, in children too
    if args.dry_run:
        for recipe in loaded:
            print(variants_table(recipe))
            note = bf16_note(recipe)
            if note:
                print(f"note: {note}")
        return 0
    from bench.preflight import preflight
    from bench.runner import Terminated, run_recipe

    failed = 0
    try:
        for recipe in loaded:
            # Data sets and weights files load before anything of this recipe is recorded: a
            # missing folder, a broken image or a weights file for another architecture fails
            # here, with nothing written. (Per recipe: an earlier recipe of the same command may
            # produce the weights a later one starts from.)
            preflight(recipe)
            frame = run_recipe(
                recipe, results_dir=args.results_dir, tracking_uri=args.tracking_uri, force=args.force
            )
            failed += int((frame["status"] == "failed").sum()) if frame is not None else 0
    except Terminated:
        print(
            "terminated (SIGTERM): finished variants are recorded; run the same command again to resume",
            file=sys.stderr,
        )
        return 128 + signal.SIGTERM
    return 1 if failed else 0


def bf16_note(recipe) -> str | None:
    """Say so when amp_bf16 variants would run emulated on this CPU (checked without torch)."""
    from bench.hardware import EMULATED_BF16_NOTE, cpu_has_native_bf16

    bf16 = [v for v in recipe.variants if v.body.train.precision == "amp_bf16" and v.body.train.device != "cuda"]
    if bf16 and not cpu_has_native_bf16():
        return f"{EMULATED_BF16_NOTE} ({len(bf16)} run(s); --emulated-bf16 skip records them as skipped)"
    return None


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
