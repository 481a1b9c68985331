"""The timing session of ``bench speed``: every variant once per round, rounds one after another
(A B C A B C ...), so drift of the machine over the session hits every variant alike and each round
is a paired block. Each timing runs in a fresh process (``python -m bench.speedcheck.session``: no
allocator, compile cache or warmed-up thread pool carried over from another variant) and prints
one JSON line.

A timing uses the engine's own build, step and meter, with the contention monitor around it. The
model starts from initialisation (or the recipe's pretrained weights), not the study's trained
weights: a step runs the same kernels on the same shapes whatever the weights' values. Tricks are
applied as at the start of training (epoch 0)."""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.errors import BenchError

MARK = "BENCH_SPEED_RESULT "


def interleaved(groups: list[str], rounds: int) -> list[tuple[int, str]]:
    return [(r, g) for r in range(rounds) for g in groups]


def child_env() -> dict[str, str]:
    """The child imports this same ``bench`` (a checkout or worktree), whatever is installed."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])  # the folder holding bench/
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    return env


def time_once(
    recipe: str, group: str, steps: int, warmup: int, overrides: list[str], overlays: list[str]
) -> dict:
    cmd = [sys.executable, "-m", "bench.speedcheck.session", recipe, "--group", group,
           "--steps", str(steps), "--warmup", str(warmup)]  # fmt: skip
    cmd += [f"--overlay={o}" for o in overlays] + [f"--override={o}" for o in overrides]
    done = subprocess.run(cmd, env=child_env(), capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    if done.returncode or not lines:
        raise BenchError(f"timing {group} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(lines[-1][len(MARK) :])


class StepSlice:
    """``n`` batches of a loader, cycling over its epochs: one ``train_one_epoch`` call runs exactly
    ``n`` engine steps, however many batches an epoch of the data has."""

    def __init__(self, loader: Any, n: int):
        self.loader, self.n = loader, n

    def __len__(self) -> int:
        return self.n

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def __iter__(self):
        return itertools.islice(itertools.chain.from_iterable(itertools.repeat(self.loader)), self.n)


def time_steps(variant: Any, steps: int, warmup: int) -> dict[str, float]:
    """Images per second over ``steps`` engine steps after ``warmup`` untimed ones."""
    from bench.components.schedulers import build_scheduler
    from bench.engine.contention import ContentionMonitor, summarize
    from bench.engine.loop import train_one_epoch
    from bench.engine.measure import PeakMemory, Throughput
    from bench.engine.state import build_state

    state = build_state(variant)
    train = variant.body.train
    total = warmup + steps
    if total > train.epochs * len(state.train_loader):  # a schedule that ends early would refuse the steps
        state.schedule = build_scheduler(
            state.optimizer,
            train.scheduler,
            epochs=train.epochs,
            steps_per_epoch=math.ceil(total / train.epochs),
        )
    state.train_loader = StepSlice(state.train_loader, total)
    memory = PeakMemory(state.device)
    memory.reset()
    meter = Throughput(state.device, warmup)
    monitor = ContentionMonitor(state.device, variant.body.report.contention_threshold)
    monitor.start()
    started = time.perf_counter()
    loss, _ = train_one_epoch(state, meter)
    record = {"time/train_epoch_s": time.perf_counter() - started, **monitor.stop()}
    return {
        "throughput/train_img_s": meter.images_per_second,
        "time/timed_s": meter.seconds,
        "images": float(meter.images),
        "train/loss": loss,
        memory.metric: memory.peak_mb(),
        **summarize([record], monitor.threshold),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.speedcheck.session")
    parser.add_argument("recipe")
    parser.add_argument("--group", required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--warmup", type=int, required=True)
    parser.add_argument("--overlay", action="append", default=[])
    parser.add_argument("--override", action="append", default=[])
    args = parser.parse_args(argv)
    from bench.engine.errors import VariantSkipped
    from bench.validate.recipe import load_validated

    loaded = load_validated(args.recipe, args.override, args.overlay)
    variant = next(v for v in loaded.variants if v.group == args.group)
    try:
        out = {"status": "finished", **time_steps(variant, args.steps, args.warmup)}
    except VariantSkipped as exc:
        out = {"status": "skipped", "reason": str(exc)}
    print(MARK + json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
