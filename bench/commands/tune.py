"""``bench tune RECIPE [key=value ...] [--workers N] [--storage URL]``: an Optuna study over the
recipe's ``tune.space``; re-running the same command continues the study."""

from __future__ import annotations

import argparse

from bench.commands.common import add_executor_arguments, add_recipe_arguments, ray_options


def configure(parser: argparse.ArgumentParser) -> None:
    add_recipe_arguments(parser)
    parser.add_argument(
        "--workers", type=int, default=1,
        help="worker processes on this machine (default 1); start the same command on other "
             "machines with a shared --storage to add more",
    )  # fmt: skip
    parser.add_argument(
        "--storage", default=None,
        help="Optuna storage (default sqlite under results/<study>/optuna.db, shared by local workers): "
             "postgresql+psycopg2://user:pw@host/db for many machines; journal:PATH reads an older bench's study",
    )  # fmt: skip
    parser.add_argument("--study", default=None, help="study name (default tune.study, else the recipe name)")
    parser.add_argument("--n-trials", type=int, default=None, help="same as tune.n_trials=N")
    parser.add_argument("--timeout", type=float, default=None, help="same as tune.timeout=SECONDS")
    parser.add_argument(
        "--dry-run", action="store_true", help="validate the recipe and search space, then exit"
    )
    add_executor_arguments(parser, unit="worker")


def main(args: argparse.Namespace) -> int:
    from bench.commands.api import tune_options
    from bench.tune.study import build_plan, run_study

    options = tune_options(
        args.recipe, args.overrides, overlays=args.overlay, results_dir=args.results_dir,
        tracking_uri=args.tracking_uri, storage=args.storage, workers=args.workers, study=args.study,
        n_trials=args.n_trials, timeout=args.timeout, ray=ray_options(args),
    )  # fmt: skip
    if args.dry_run:
        plan = build_plan(options)
        spec = plan.storage_spec()
        print(
            f"{plan.loaded.source}: study {plan.study_name}, {plan.tune.n_trials} trials, storage {spec.display}"
        )
        for p in plan.space.params:
            print(f"  {p.key}: {p.kind} {list(p.choices) if p.kind == 'categorical' else [p.low, p.high]}"
                  + (" log" if p.log else "") + (f" step {p.step}" if p.step else ""))  # fmt: skip
        return 0
    return run_study(options)
