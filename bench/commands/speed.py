"""``bench speed RECIPE``: re-time each variant's training step on a quiet machine, without
training to convergence. Each variant runs ``--warmup`` + ``--steps`` engine steps in a fresh
process, variants interleaved round after round (A B C A B C ...), so an accuracy study that ran
packed on a busy machine can get a clean cost card afterwards (an idle machine, a dedicated GPU).
Writes ``results/<recipe>/speed.csv`` (every timing) and ``speed_table.csv`` (the cost card)."""

from __future__ import annotations

import argparse

from bench.commands.common import add_recipe_arguments


def configure(parser: argparse.ArgumentParser) -> None:
    add_recipe_arguments(parser)
    parser.add_argument(
        "--steps", type=int, default=50, help="timed steps per variant and round (default 50)"
    )
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps before them (default 10)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of every variant (default 5)")
    parser.add_argument(
        "--variant", action="append", default=[], help="time only these variants (repeatable)"
    )


def main(args: argparse.Namespace) -> int:
    import pandas as pd

    from bench.errors import BenchError
    from bench.execution.results import recipe_dir
    from bench.recipe.changes import recipe_changes
    from bench.report.speed import COMPUTE_NEUTRAL_PREFIXES
    from bench.speedcheck.session import interleaved, time_once
    from bench.speedcheck.table import cost_table, table_text
    from bench.validate.recipe import load_validated

    if args.steps < 1 or args.rounds < 1 or args.warmup < 0:
        raise BenchError("--steps and --rounds must be at least 1, --warmup at least 0")
    loaded = load_validated(args.recipe, args.overrides, args.overlay)
    changes = recipe_changes(loaded)
    groups = list(dict.fromkeys(v.group for v in loaded.variants))
    unknown = set(args.variant) - set(groups)
    if unknown:
        raise BenchError(f"no variant {', '.join(sorted(unknown))}; the recipe has: {', '.join(groups)}")
    if args.variant:
        groups = [g for g in groups if g in args.variant or g == changes.baseline]
    neutral = {
        g for g, c in changes.variants.items() if c and all(k.startswith(COMPUTE_NEUTRAL_PREFIXES) for k in c)
    }
    out = recipe_dir(args.results_dir, loaded.name)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for order, (r, group) in enumerate(interleaved(groups, args.rounds)):
        result = time_once(args.recipe, group, args.steps, args.warmup, args.overrides, args.overlay)
        rows.append(
            {"order": order, "round": r, "group": group, "steps": args.steps, "warmup": args.warmup, **result}
        )
        pd.DataFrame(rows).to_csv(out / "speed.csv", index=False)  # kept whole after every timing
        rate = result.get("throughput/train_img_s", float("nan"))
        dirty = " (contaminated)" if result.get("contention/speed_contaminated") else ""
        print(f"round {r + 1}/{args.rounds} {group}: {rate:.1f} img/s{dirty}", flush=True)
    table, floor = cost_table(pd.DataFrame(rows), changes.baseline, neutral)
    table.to_csv(out / "speed_table.csv", index=False)
    print(f"throughput ratio to {changes.baseline}, paired by round; {floor}")
    for line in table_text(table):
        print("  " + line)
    print(f"wrote {out / 'speed.csv'} and {out / 'speed_table.csv'}")
    return 0
