"""``bench calibrate``: the error rates, power and seed counts of bench's verdicts, measured by
simulation (bench/report/calibrate.py), for the spread and effect sizes of your own runs."""

from __future__ import annotations

import argparse

# One flag per field of bench.report.calibrate.Setting, in its order.
HELP = {
    "sd": "per-run accuracy spread",
    "effect": "planted difference",
    "margin": "equivalence margin",
    "variants": "comparisons in the family",
    "start_seeds": "the recipe's seeds",
    "max_seeds": "--until-decided's cap",
    "fixed_seeds": "fixed design",
    "studies": "simulated studies per row (speed rows: half)",
    "speed_cv": "per-run throughput noise after pairing (log scale)",
    "speed_ratio": "planted speed-up",
    "neutral": "compute-neutral variants setting the speed noise floor",
}


def configure(parser: argparse.ArgumentParser) -> None:
    from bench.report.calibrate import Setting

    defaults = Setting()
    for name, text in HELP.items():
        default = getattr(defaults, name)
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=type(default), default=default, help=f"{text} (default {default})")
    parser.add_argument("--seed", type=int, default=0, help="simulation seed")


def main(args: argparse.Namespace) -> int:
    from bench.report.calibrate import Setting, calibrate, table_text

    setting = Setting(**{name: getattr(args, name) for name in HELP})
    print(table_text(calibrate(setting, seed=args.seed)))
    return 0
