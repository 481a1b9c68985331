"""``bench ui [RECIPE]``: the MLflow UI on a recipe's tracking store, landing on the latest study's
variants one row each (mean over seeds); ``--compare`` charts its finished variants' test accuracy against throughput;
``--tune`` serves the recipe's Optuna study in optuna-dashboard instead. Bound to 127.0.0.1."""

from __future__ import annotations

import argparse

from bench.commands.common import add_recipe_arguments


def configure(parser: argparse.ArgumentParser) -> None:
    add_recipe_arguments(parser, "?", " (its experiment, tracking.uri, study)")
    parser.add_argument("--experiment", help="MLflow experiment to open (default: the recipe's)")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="open on a chart of the finished variants' test accuracy against throughput",
    )
    parser.add_argument(
        "--tune", action="store_true", help="serve the recipe's Optuna study (bench tune) in optuna-dashboard"
    )
    parser.add_argument(
        "--storage", default=None, help="with --tune: the Optuna storage, as given to bench tune"
    )
    parser.add_argument("--study", default=None, help="with --tune: the study name, as given to bench tune")
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)"
    )
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --host other machines can reach (the server has no authentication)",
    )
    parser.add_argument(
        "--port", type=int, default=None, help="port (default 5000, 8080 with --tune; 0: any free one)"
    )
    parser.add_argument("--no-browser", action="store_true", help="print the URL only; do not open a browser")


def main(args: argparse.Namespace) -> int:
    from bench.errors import BenchError
    from bench.ui import server

    what = "optuna-dashboard" if args.tune else "the MLflow UI"
    server.check_host(args.host, args.allow_remote, what)
    if args.tune:
        from bench.tune.study import TuneOptions

        if not args.recipe:
            raise BenchError("--tune needs the recipe file given to bench tune: bench ui --tune RECIPE")
        options = TuneOptions(
            recipe=args.recipe, overrides=list(args.overrides), overlays=list(args.overlay),
            results_dir=args.results_dir, tracking_uri=args.tracking_uri, storage=args.storage, study=args.study,
        )  # fmt: skip
        port = 8080 if args.port is None else args.port
        return server.serve_study(options, args.host, port, open_browser=not args.no_browser)
    if args.storage or args.study:
        raise BenchError(
            "--storage and --study go with --tune (the Optuna study); for MLflow use --tracking-uri"
        )
    return _mlflow(args)


def _mlflow(args: argparse.Namespace) -> int:
    from bench.tracking import mlflow_store as store
    from bench.tracking.uris import redact_uri
    from bench.ui import server

    loaded, hint, experiment = None, None, args.experiment
    if args.recipe:
        from bench.recipe.load import load_recipe

        loaded = load_recipe(args.recipe, list(args.overrides), list(args.overlay))
        hint = loaded.recipe.tracking.uri
        experiment = experiment or loaded.experiment
    uri = store.default_tracking_uri(args.results_dir, args.tracking_uri or hint)
    client = store.open_store(uri)  # create and migrate it here, with a clear error if it cannot be opened
    port = 5000 if args.port is None else args.port
    port = port or server.free_port(args.host)
    base = server.base_url(args.host, port)
    print(f"MLflow UI for {redact_uri(uri)} at {base}", flush=True)
    url = server.landing(client, base, experiment, loaded, args.results_dir, compare=args.compare)
    return server.serve_mlflow(uri, args.host, port, url, open_browser=not args.no_browser)
