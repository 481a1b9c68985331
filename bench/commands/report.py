"""``bench report RECIPE`` (or ``--experiment NAME``): variants over seeds, against the baseline,
per axis and on the Pareto fronts; writes ``results/<recipe>/report.md``, a self-contained
``report.html``, CSVs and PNGs. ``--compare OTHER`` sets another study beside it (a recipe file,
or a results folder from an earlier report, e.g. a GPU study copied from another machine)."""

from __future__ import annotations

import argparse

from bench.commands.common import add_store_arguments


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "recipe", nargs="?", help="recipe YAML file (gives the experiment, baseline, target_acc)"
    )
    parser.add_argument("overrides", nargs="*", default=[], help="dotted overrides, as given to bench run")
    parser.add_argument("--overlay", action="append", default=[], help="YAML merged over the recipe")
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
    add_store_arguments(parser)
    parser.add_argument(
        "--no-log", action="store_true", help="do not log the report as artifacts of the recipe's parent run"
    )


def main(args: argparse.Namespace) -> int:
    from bench.report.api import load_other, resolve
    from bench.report.build import make_report, summary_lines
    from bench.results import recipe_dir
    from bench.tracking import mlflow_store as store

    target = resolve(
        args.recipe, overrides=args.overrides, overlays=args.overlay, experiment=args.experiment,
        results_dir=args.results_dir, tracking_uri=args.tracking_uri,
    )  # fmt: skip
    others = [
        load_other(o, results_dir=args.results_dir, tracking_uri=args.tracking_uri) for o in args.compare
    ]
    report = make_report(
        store.open_store(target.uri), experiment=target.experiment, out_dir=recipe_dir(args.results_dir, target.name),
        tracking_uri=target.uri, recipe_name=target.name, group_order=target.order,
        baseline=args.baseline or target.baseline, target_acc=target.target_acc, min_effect=target.min_effect,
        memory_front=args.memory_front, others=others, log_artifacts=not args.no_log,
    )  # fmt: skip
    wanted, got = args.baseline or target.baseline, report.tables.baseline_name
    if wanted and got != wanted:
        print(f"warning: baseline '{wanted}' has no finished runs; compared against '{got}'")
    for warning in report.tables.warnings:
        print(f"warning: {warning.replace('`', '')}")
    print(f"wrote {report.path} and {report.html.name} (+ {len(report.files)} CSV/PNG files in "
          f"{report.path.parent / 'report'})")  # fmt: skip
    for line in summary_lines(report.tables):
        print("  " + line.replace("`", ""))
    return 0
