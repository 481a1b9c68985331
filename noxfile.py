"""How tests, lint, smoke runs and benchmarks are started, locally and in CI.

Sessions reuse the packages already installed in the base interpreter (torch is ~5 GB; the
machine's pip cache holds the pinned build) and install bench itself into their venv.
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True

REPO = Path(__file__).parent
SHARED_DATA = REPO.parent / "shared" / "data"
VENV = {"venv_params": ["--system-site-packages"]}


def _install(session: nox.Session, extras: str = "test") -> None:
    session.install("-e", f".[{extras}]")


def _data_env() -> dict[str, str]:
    """Point bench at the real CIFAR-10 archive beside the checkout unless told otherwise."""
    env = {}
    if "BENCH_DATA_DIR" not in os.environ and (SHARED_DATA / "cifar10-jpeg.tar.gz").exists():
        env["BENCH_DATA_DIR"] = str(SHARED_DATA)
    return env


@nox.session(**VENV)
def tests(session: nox.Session) -> None:
    """The test suite: unit tests plus the (small, CPU) integration tests; no benchmarks."""
    _install(session)
    pytest = ("python", "-m", "pytest", "-p", "no:cacheprovider")
    session.run(*pytest, "-m", "not benchmark", "-q", "--durations=15", *session.posargs, env=_data_env())


@nox.session(**VENV)
def fast(session: nox.Session) -> None:
    """Unit tests only (seconds): what to run while editing."""
    _install(session)
    session.run("python", "-m", "pytest", "-q", *session.posargs)


@nox.session(**VENV)
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("python", "-m", "ruff", "check", ".")
    session.run("python", "-m", "ruff", "format", "--check", ".")


@nox.session(**VENV)
def smoke(session: nox.Session) -> None:
    """Pretrain a tiny model on 5 CIFAR-10 classes, then fine-tune it across every axis."""
    _install(session, "test")
    results = session.posargs[0] if session.posargs else "results"
    env = _data_env()
    session.run(
        "bench", "run", "recipes/smoke_pretrain.yaml", "recipes/smoke.yaml", "--results-dir", results,
        env=env,  # amp_bf16 is skipped by default where the CPU would emulate it
    )  # fmt: skip
    session.run("bench", "report", "recipes/smoke.yaml", "--results-dir", results, env=env)
    session.run("python", "scripts/check_smoke.py", "run", results)  # learned, recorded, reported


@nox.session(**VENV)
def tune(session: nox.Session) -> None:
    """A small Optuna study on real CIFAR-10 (pruning included)."""
    _install(session)
    results = session.posargs[0] if session.posargs else "results"
    # two worker processes share the default SQLite study (results/smoke_tune/optuna.db)
    session.run("bench", "tune", "recipes/smoke_tune.yaml", "--workers", "2", "--results-dir", results,
                env=_data_env())  # fmt: skip
    session.run("python", "scripts/check_smoke.py", "tune", results)  # pruned; runs closed; stores agree


@nox.session(**VENV)
def gpu(session: nox.Session) -> None:
    """The precision x compile card (ResNet-18, CIFAR-10, 32 px) on a CUDA GPU: one table of
    img/s, peak training memory and time to 94%, with ratios to fp32. Extra args go to the script
    (e.g. ``nox -s gpu -- --set seeds=[0]``)."""
    _install(session)
    session.run("python", "scripts/gpu_card.py", *session.posargs, env=_data_env())


@nox.session(**VENV)
def benchmark(session: nox.Session) -> None:
    """pytest-benchmark: the engine's step against a bare PyTorch loop, and other hot paths. ``-s``: the
    benchmarks print their paired ratios with intervals, which pytest would otherwise swallow."""
    _install(session)
    session.run(
        "python",
        "-m",
        "pytest",
        "-s",
        "-m",
        "benchmark",
        "-p",
        "no:cacheprovider",
        "benchmarks",
        *session.posargs,
    )


@nox.session(**VENV)
def calibrate(session: nox.Session) -> None:
    """Error rates, power and seeds per arm of bench's verdicts (fixed and --until-decided), by
    simulating 2,000 studies per row through the same decision code (``bench calibrate``)."""
    _install(session)
    session.run("bench", "calibrate", *session.posargs)
