"""The timing session: every variant once per round, rounds one after another (A B C A B C ...),
each timing in a fresh process, so drift of the machine over the session hits every variant alike
and each round is a paired block."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.errors import BenchError
from bench.speedcheck.child import MARK


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
    cmd = [sys.executable, "-m", "bench.speedcheck.child", recipe, "--group", group,
           "--steps", str(steps), "--warmup", str(warmup)]  # fmt: skip
    cmd += [f"--overlay={o}" for o in overlays] + [f"--override={o}" for o in overrides]
    done = subprocess.run(cmd, env=child_env(), capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    if done.returncode or not lines:
        raise BenchError(f"timing {group} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(lines[-1][len(MARK) :])
