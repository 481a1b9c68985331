"""The ``bench`` command line. Each subcommand lives in ``bench/commands/<name>.py`` with
``configure(parser)`` and ``main(args) -> int``, imported only when that subcommand runs, so
``bench --help`` does not pay for torch, mlflow or optuna."""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys

from bench import __version__

COMMANDS = {
    "run": "train and evaluate every variant of a recipe; record to MLflow and results/",
    "tune": "Optuna study over LR and per-layer LR ratios, with pruning",
    "report": "compare variants across seeds: tables, confidence intervals, plots",
    "plan": "plot every variant's LR schedule without training, and flag known-bad combinations",
    "ui": "start the MLflow UI on a recipe's tracking store",
    "verify-resume": "train a variant straight and with a kill + resume, then compare the states",
    "calibrate": "simulate A/A studies and planted effects through bench's decision code: error rates, power",
    "speed": "re-time finished variants' training steps in fresh, interleaved processes: a clean cost card",
    "ls": "list registered components: schedulers, optimizers, models (by glob), data sets, losses, tricks",
}


# What an interrupted command kept, by command (`bench tune` said "finished variants", as run does).
INTERRUPTED = {
    "run": "finished variants are recorded; run the same command again to resume",
    "tune": "finished trials are recorded and an interrupted one is queued again with its parameters; "
    "run the same command again to continue the study",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench", description="Benchmark PyTorch training tricks from YAML recipes."
    )
    parser.add_argument("--version", action="version", version=f"bench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv or ["--help"])  # prints help or an error and exits
        return 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(f"bench.commands.{name.replace('-', '_')}")
    sub = argparse.ArgumentParser(prog=f"bench {name}", description=COMMANDS[name])
    module.configure(sub)
    # Overrides may come anywhere on the line: `bench tune r.yaml --n-trials 4 train.epochs=1`.
    args = sub.parse_intermixed_args(rest)
    from bench.commands.common import check_results_dir, sort_positionals
    from bench.errors import BenchError, Terminated

    try:
        sort_positionals(args, sub)
        check_results_dir(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if getattr(args, "results_dir", None):
        # Recipes may name outputs of earlier runs as ${BENCH_RESULTS_DIR}/... (e.g. weights).
        os.environ["BENCH_RESULTS_DIR"] = os.path.abspath(args.results_dir)
    try:
        return int(module.main(args) or 0)
    except BenchError as exc:
        from bench.tracking.uris import redact_text

        print(f"error: {redact_text(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM turned into bench.errors.Terminated
        print(f"interrupted: {INTERRUPTED.get(name, 'run the same command again')}", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except BrokenPipeError:  # `bench ls models | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def entry() -> None:
    """The ``bench`` program: ``main``, then exit without the interpreter's last garbage collection,
    which walks torch's and MLflow's whole heap (1-3 s per command on a 2-core box) to free
    memory the OS takes back anyway. Exit handlers still run; ``main`` called in-process is untouched."""
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    entry()
