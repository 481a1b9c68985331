"""``bench report RECIPE`` (or ``--experiment NAME``): variants over seeds, against the baseline,
per axis and on the Pareto fronts; writes ``results/<recipe>/report.md`` + CSVs + PNGs."""

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
    add_store_arguments(parser)
    parser.add_argument(
        "--no-log", action="store_true", help="do not log the report as artifacts of the recipe's parent run"
    )


def main(args: argparse.Namespace) -> int:
    from bench.errors import BenchError
    from bench.report.build import make_report
    from bench.results import recipe_dir
    from bench.tracking import mlflow_store as store

    if not args.recipe and not args.experiment:
        raise BenchError("give a recipe file or --experiment NAME")
    name = experiment = args.experiment
    uri_hint, order, baseline, target = None, None, None, None
    if args.recipe:
        from bench.recipe.load import load_recipe

        loaded = load_recipe(args.recipe, args.overrides, args.overlay)
        name = loaded.name
        experiment = args.experiment or loaded.recipe.tracking.experiment or loaded.name
        uri_hint = loaded.recipe.tracking.uri
        order = list(dict.fromkeys(v.group for v in loaded.variants))
        baseline, target = loaded.recipe.baseline, loaded.recipe.target_acc
    uri = store.default_tracking_uri(args.results_dir, args.tracking_uri or uri_hint)
    client = store.open_store(uri)
    report = make_report(
        client, experiment=experiment, out_dir=recipe_dir(args.results_dir, name), tracking_uri=uri,
        recipe_name=name, group_order=order, baseline=args.baseline or baseline, target_acc=target,
        log_artifacts=not args.no_log,
    )  # fmt: skip
    if args.baseline and report.tables.baseline_name != args.baseline:
        print(
            f"warning: baseline '{args.baseline}' has no finished runs; compared against '{report.tables.baseline_name}'"
        )
    elif baseline and report.tables.baseline_name != baseline:
        print(
            f"warning: the recipe's baseline '{baseline}' has no finished runs; compared against '{report.tables.baseline_name}'"
        )
    print(f"wrote {report.path} (+ {len(report.files)} CSV/PNG files in {report.path.parent / 'report'})")
    from bench.report.build import summary_lines

    for line in summary_lines(report.tables):
        print("  " + line.replace("`", ""))
    return 0
