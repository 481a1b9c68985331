"""``bench calibrate``: the error rates, power and seed counts of bench's verdicts, measured by
simulation (bench/report/calibrate.py), for the spread and effect sizes of your own runs."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    from bench.report.calibrate import Setting

    d = Setting()
    parser.add_argument("--sd", type=float, default=d.sd, help=f"per-run accuracy spread (default {d.sd})")
    parser.add_argument(
        "--effect", type=float, default=d.effect, help=f"planted difference (default {d.effect})"
    )
    parser.add_argument(
        "--margin", type=float, default=d.margin, help=f"equivalence margin (default {d.margin})"
    )
    parser.add_argument(
        "--variants", type=int, default=d.variants, help="comparisons in the family (default 10)"
    )
    parser.add_argument(
        "--start-seeds", type=int, default=d.start_seeds, help="the recipe's seeds (default 3)"
    )
    parser.add_argument(
        "--max-seeds", type=int, default=d.max_seeds, help="--until-decided's cap (default 12)"
    )
    parser.add_argument("--fixed-seeds", type=int, default=d.fixed_seeds, help="fixed design (default 8)")
    parser.add_argument(
        "--studies", type=int, default=d.studies, help="simulated studies per row (default 2000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="simulation seed")


def main(args: argparse.Namespace) -> int:
    from bench.report.calibrate import Setting, calibrate, table_text

    setting = Setting(args.sd, args.effect, args.margin, args.variants, args.start_seeds, args.max_seeds,
                      args.fixed_seeds, args.studies)  # fmt: skip
    print(table_text(calibrate(setting, seed=args.seed)))
    return 0
