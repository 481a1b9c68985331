"""``bench ui [RECIPE]``: the MLflow UI on a recipe's tracking store, bound to 127.0.0.1."""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys

from bench.commands.common import add_store_arguments


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", nargs="?", help="recipe YAML file (its tracking.uri, if set)")
    add_store_arguments(parser)
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)"
    )
    parser.add_argument("--port", type=int, default=5000, help="port (default 5000; 0 picks a free one)")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def server_command(uri: str, host: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        uri,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]


def main(args: argparse.Namespace) -> int:
    from bench.tracking import mlflow_store as store

    hint, experiment = None, None
    if args.recipe:
        from bench.recipe.load import load_recipe

        loaded = load_recipe(args.recipe)
        hint = loaded.recipe.tracking.uri
        experiment = loaded.recipe.tracking.experiment or loaded.name
    uri = store.default_tracking_uri(args.results_dir, args.tracking_uri or hint)
    store.open_store(uri)  # create and migrate it here, with a clear error if it cannot be opened
    port = args.port or free_port(args.host)
    url = f"http://{args.host}:{port}"
    print(
        f"MLflow UI for {uri} at {url}" + (f" (experiment '{experiment}')" if experiment else ""), flush=True
    )
    print("press Ctrl-C to stop", flush=True)
    proc = subprocess.Popen(server_command(uri, args.host, port))

    def stop(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
