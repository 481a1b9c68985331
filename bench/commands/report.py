"""``bench report RECIPE`` (or ``--experiment NAME``): variants over seeds, against the baseline,
per axis and on the Pareto fronts; writes ``results/<recipe>/report.md``, a self-contained
``report.html``, CSVs and PNGs. ``--compare OTHER`` sets another study beside it (a recipe file,
or a results folder from an earlier report, e.g. a GPU study copied from another machine)."""

from __future__ import annotations

import argparse

from bench.commands.common import add_recipe_arguments


def configure(parser: argparse.ArgumentParser) -> None:
    add_recipe_arguments(parser, "?", " (gives the experiment, baseline, target_acc)")
    parser.add_argument("--experiment", help="MLflow experiment to report on (default: the recipe's)")
    parser.add_argument(
        "--baseline",
        help="variant (without seed) to compare against (default: recipe's baseline, else the first)",
    )
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="OTHER",
        help="another study to show side by side: a recipe file (read from MLflow) or a results folder "
        "results/<recipe> where `bench report` ran (e.g. copied from a GPU machine); repeatable",
    )
    parser.add_argument(
        "--memory-front",
        action="store_true",
        default=None,
        help="put peak memory on a Pareto front even when it is a CPU's process RSS (default: GPU memory only)",
    )
    parser.add_argument(
        "--variance",
        action="store_true",
        help="split run-to-run variance into initialisation, data order + augmentation and the rest, "
        "with intervals (needs a crossed design: init_seeds and data_seeds in the recipe); "
        "also written to report.md and report/variance.csv",
    )
    parser.add_argument(
        "--no-log", action="store_true", help="do not log the report as artifacts of the recipe's parent run"
    )


def main(args: argparse.Namespace) -> int:
    import pandas as pd

    from bench.commands.api import build_report
    from bench.report import variance
    from bench.report.build import VARIANCE_DRAWS, VARIANCE_METRIC, summary_lines
    from bench.report.compare import matched

    report = build_report(
        args.recipe, args.overrides, overlays=args.overlay, experiment=args.experiment, baseline=args.baseline,
        results_dir=args.results_dir, tracking_uri=args.tracking_uri, memory_front=args.memory_front,
        compare=args.compare, log_artifacts=not args.no_log, variance=args.variance,
    )  # fmt: skip
    asked = report.requested_baseline
    if asked and report.tables.baseline_name is None:
        print(f"warning: no variant has a finished run (the baseline '{asked}' included): nothing to compare")
    elif asked and report.tables.baseline_name != asked:
        which = "baseline" if args.baseline else "the recipe's baseline"
        print(
            f"warning: {which} '{asked}' has no finished runs; compared against '{report.tables.baseline_name}'"
        )
    for warning in report.tables.warnings:
        print(f"warning: {warning.replace('`', '')}")
    print(f"wrote {report.path} and {report.html.name} (+ {len(report.files)} CSV/PNG files in "
          f"{report.path.parent / 'report'})")  # fmt: skip
    for line in summary_lines(report.tables):
        print("  " + line.replace("`", ""))
    for other, side in report.comparisons.items():  # a study of other variants compares nothing
        if not matched(side):
            print(f"warning: --compare {other}: no variant name is in both studies (variants are matched by "
                  "name, e.g. 'scheduler=cosine'): the side-by-side table compares nothing")  # fmt: skip
    if not report.variance:
        return 0
    print("\nRun-to-run variance. " + variance.METHOD_NOTE.format(pct=report.tables.confidence * 100,
          draws=VARIANCE_DRAWS))  # fmt: skip
    for group, split in report.variance.items():
        print("\n" + variance.heading(group, split, VARIANCE_METRIC).replace("`", ""))
        table = pd.DataFrame(variance.rows(split), columns=variance.HEADER).to_string(index=False)
        print("\n".join("  " + line for line in table.splitlines()))
    print("\n" + variance.RESIDUAL_NOTE)
    print(f"wrote {report.path.parent / 'report' / 'variance.csv'}")
    return 0
