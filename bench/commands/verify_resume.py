"""``bench verify-resume RECIPE [key=value ...] [--variant NAME]``: prove that resuming is exact.

The chosen variant is trained three times, each in its own process, with deterministic settings:

    straight   start to finish, no interruption
    killed     stopped in the middle of epoch k+1 by SIGKILL (the checkpoint of epoch k is on disk)
    resumed    a new process continues the killed run from its last checkpoint to the end

Then the final states of *straight* and *resumed* are compared: model weights, optimizer,
LR scheduler, GradScaler, SWA model and SWALR, plus the per-epoch losses and accuracies.
Each part's largest absolute difference is printed; PASS when all are within ``--atol``
(0: bit-identical), else FAIL and exit code 1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.commands.common import add_recipe_arguments
from bench.engine.hooks import BaseHook
from bench.engine.state_diff import compare_states, verdict_text  # noqa: F401 - re-exported
from bench.errors import BenchError, RecipeError

# Per-epoch record keys that measure the machine, not the training: never compared.
UNSTABLE_PREFIXES = ("throughput/", "time/", "memory/", "contention/")  # the machine, not the run


def configure(parser: argparse.ArgumentParser) -> None:
    add_recipe_arguments(parser)
    parser.add_argument(
        "--variant", default=None, help="variant name (with or without seed); default: the first"
    )
    parser.add_argument(
        "--kill-epoch",
        type=int,
        default=None,
        help="kill in the middle of this (1-based) epoch; default: the middle of the run",
    )
    parser.add_argument(
        "--atol", type=float, default=0.0, help="allowed max abs difference (default 0: exact)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (checkpoints, dumps)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed per training process")


# --- choosing the variant ----------------------------------------------------------------------


def pick_variant(loaded, name: str | None):
    if name is None:
        return loaded.variants[0]
    for variant in loaded.variants:
        if name in (variant.name, variant.group):
            return variant
    names = ", ".join(v.name for v in loaded.variants)
    raise RecipeError(f"no variant named '{name}'; variants: {names}", source=loaded.source, key="--variant")


# --- the worker (one training process) ---------------------------------------------------------


class _Dump(BaseHook):
    """Hook: at the very end (after SWA's BatchNorm update) save every state that must match."""

    def __init__(self, path: Path):
        self.path = path

    def on_end(self, state: Any, result: Any) -> None:
        from bench.engine import checkpoint as ckpt

        stable = lambda r: {k: v for k, v in r.items() if not k.startswith(UNSTABLE_PREFIXES)}  # noqa: E731
        ckpt.atomic_save(
            {
                "epoch": state.epoch,
                "resumed_from_epoch": state.resumed_from_epoch,
                "model": state.model.state_dict(),
                "optimizer": state.optimizer.state_dict(),
                "scheduler": state.schedule.state_dict(),
                "precision": state.precision.state_dict(),
                "tricks": {t.name: t.state_dict() for t in state.tricks},
                "metrics": {"final": stable(result.metrics), "history": [stable(r) for r in state.history]},
            },
            self.path,
        )


class _KillInEpoch:
    """Progress stand-in: halfway through (0-based) epoch ``epoch`` the process SIGKILLs itself:
    no handler, flush or atexit runs, as under the OOM killer."""

    def __init__(self, epoch: int):
        self.kill_epoch, self.epoch = epoch, -1

    def epoch_start(self, epoch: int, epochs: int) -> None:
        self.epoch = epoch

    def batch(self, index: int, count: int, loss_sum: Any, seen: int) -> None:
        if self.epoch == self.kill_epoch and index == count // 2:
            os.kill(os.getpid(), signal.SIGKILL)

    def epoch_end(self, epoch: int, epochs: int, record: dict[str, float], raw: bool = False) -> None:
        pass


def worker(spec: dict[str, Any]) -> int:
    """One training process, recorded like ``bench run`` records (its own MLflow store in the work
    folder), so what is verified is the path users run."""
    import torch

    from bench.execution.recorded import Recording, run_recorded
    from bench.recipe.load import load_recipe
    from bench.tracking import mlflow_store as store
    from bench.tracking.variant_runs import find_previous

    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)
    loaded = load_recipe(spec["recipe"], spec["overrides"], spec["overlays"])
    variant = pick_variant(loaded, spec["variant"])
    kill = spec.get("kill_epoch")
    progress = None if kill is None else _KillInEpoch(kill)
    run_dir = Path(spec["run_dir"])
    uri = f"sqlite:///{run_dir.parent / (run_dir.name + '.db')}"
    client = store.open_store(uri)
    exp_id = store.ensure_experiment(client, uri, "verify-resume")
    previous = find_previous(client, exp_id, variant.run_key)
    rec = Recording(client, exp_id, loaded.name)
    _, result = run_recorded(rec, variant, previous=previous, run_dir=run_dir, hooks=(_Dump(Path(spec["dump"])),),
                             progress=progress)  # fmt: skip
    return 0 if result.status == "finished" else 1


# --- the command -------------------------------------------------------------------------------


def _spawn(spec: dict[str, Any]) -> subprocess.Popen:
    env = dict(os.environ)
    env.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    return subprocess.Popen(
        [sys.executable, "-m", "bench.commands.verify_resume", "--worker", json.dumps(spec)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _finish(spec: dict[str, Any], what: str, timeout: float, expect: int = 0) -> None:
    """Run one training process; its exit must be ``expect`` (-SIGKILL: killed where planned)."""
    proc = _spawn(spec)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise BenchError(f"verify-resume: the {what} run took longer than {timeout:.0f}s") from None
    if proc.returncode != expect:
        how = "ended before it was killed" if expect else "failed"
        raise BenchError(f"verify-resume: the {what} run {how} (exit {proc.returncode}):\n{_tail(err)}")


def main(args: argparse.Namespace) -> int:
    from bench.engine import checkpoint as ckpt
    from bench.validate.recipe import load_validated

    loaded = load_validated(args.recipe, args.overrides, args.overlay)
    variant = pick_variant(loaded, args.variant)
    train = variant.body.train
    epochs = train.epochs
    if epochs < 2:
        raise RecipeError(
            "verify-resume needs at least 2 epochs (override train.epochs=2)",
            source=loaded.source,
            key="train.epochs",
        )
    kill_epoch = args.kill_epoch if args.kill_epoch is not None else epochs // 2 + 1  # 1-based
    if not 2 <= kill_epoch <= epochs:
        raise RecipeError(
            f"--kill-epoch must be between 2 and {epochs}", source=loaded.source, key="--kill-epoch"
        )
    every = train.checkpoint.every
    overrides = list(args.overrides)
    if every == 0:
        overrides.append("train.checkpoint.every=1")  # checkpoints off: verify with one per epoch
        every = 1
    if (kill_epoch - 1) < every:
        raise RecipeError(
            f"no checkpoint exists before epoch {kill_epoch} with train.checkpoint.every={every}; "
            f"use --kill-epoch {every + 1} or later",
            source=loaded.source,
            key="--kill-epoch",
        )
    work = Path(tempfile.mkdtemp(prefix="bench-verify-resume-"))
    base = {
        "recipe": str(args.recipe),
        "overrides": overrides,
        "overlays": list(args.overlay),
        "variant": variant.name,
    }
    print(f"verify-resume: {loaded.source} variant {variant.name} ({epochs} epochs), work folder {work}")
    t0 = time.perf_counter()
    print("  1/3 training straight through ...", flush=True)
    straight = dict(base, run_dir=str(work / "straight"), dump=str(work / "straight.pt"))
    _finish(straight, "straight", args.timeout)

    print(f"  2/3 training again, SIGKILL in the middle of epoch {kill_epoch} ...", flush=True)
    killed = dict(base, run_dir=str(work / "resumed"), dump=str(work / "resumed.pt"))
    _finish(killed | {"kill_epoch": kill_epoch - 1}, "killed", args.timeout, expect=-signal.SIGKILL)
    saved = ckpt.safe_load(work / "resumed" / ckpt.LAST)
    print(f"      killed (exit {-signal.SIGKILL}); last checkpoint on disk: after epoch {saved['epoch']}")

    print("  3/3 resuming in a new process ...", flush=True)
    _finish(killed, "resumed", args.timeout)
    a, b = ckpt.safe_load(work / "straight.pt"), ckpt.safe_load(work / "resumed.pt")
    if b["resumed_from_epoch"] != saved["epoch"]:
        raise BenchError(
            f"verify-resume: the resumed run did not resume (started at epoch {b['resumed_from_epoch']})"
        )
    ok, text = verdict_text(compare_states(a, b), args.atol)
    print(text)
    print(f"  ({time.perf_counter() - t0:.0f}s)")
    if args.keep:
        print(f"  kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        sys.exit(worker(json.loads(sys.argv[2])))
    print("usage: bench verify-resume RECIPE [key=value ...] [--variant NAME]", file=sys.stderr)
    sys.exit(2)
