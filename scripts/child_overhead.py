"""What a tiny variant's own process costs, today's child against a standard-library pool (issue 22).

Arms, interleaved within each repeat on one tiny generated-data recipe (1 epoch, CPU), each
training a different seed of it:

  inproc     ``run_task`` called in this process: no child (the reference)
  child      ``LocalExecutor.run_one``: today's forkserver ``Process`` (forkserver warm)
  pool       one ``ProcessPoolExecutor(max_tasks_per_child=1)`` per command on the same forkserver
             (same preload) running the same ``_child``; the row arrives before its worker exits,
             and the next worker is forked then, while the other arms run: neither is timed
  pool-new   a new such pool per variant (the fork is timed, as for ``child``)

Overhead = the arm's wall time minus ``inproc``'s in the same repeat (paired); printed: the median
with a 95% bootstrap interval. Then whether the pool carries what the child needs: the result, the
driver's stdout, a SIGKILLed worker as ``BrokenProcessPool``. With ``--before TREE`` also the
whole ``bench run`` command's wall time per variant, TREE's bench against this one's, as the
slope between a 1-variant and an N-variant run (the command's fixed start-up cancels out).

    PYTHONPATH=$PWD python scripts/child_overhead.py --repeats 8 --before /work/wt-old

The functions a pool worker runs are sent as ``child_overhead.<name>`` (this file imported as a
module, its folder on sys.path), not ``__main__.<name>``: the pool pickles the call in a feeder
thread, and a worker need not run this script as ``__mp_main__``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ARMS = ("inproc", "child", "pool", "pool-new")


class _Box:
    """Stands in for ``_child``'s Pipe end: the pool hands the row back as the call's result."""

    message = None

    def send(self, message):
        self.message = message


def _pool_child(spec, variant, splits, live, stdio, env, tags, driver):
    """``bench.execution.local._child`` unchanged, its row returned through the pool."""
    from bench.execution.local import _child

    box = _Box()
    _child(spec, variant, splits, box, live, stdio, env, tags, driver)
    return box.message


def _write_stdout(stdio) -> int:
    """Writes to the driver's stdout as a variant's child does (DupFd through the pool's queue)."""
    os.dup2(stdio.detach(), 1)
    os.write(1, b"written by the pool worker\n")
    return os.getpid()


def _sigkill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _module():
    """This file as the module ``child_overhead``, which a pool worker can import by name."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import child_overhead

    return child_overhead


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def tiny_folder(root: Path) -> Path:
    """The tests' tiny image folder (tests/conftest.py): 4 colour classes, 40 + 12 per class."""
    import numpy as np

    from tests.conftest import _write_split

    rng = np.random.default_rng(0)
    _write_split(root / "train", 40, rng)
    _write_split(root / "test", 12, rng)
    return root


def tiny_recipe_file(tmp: Path, seeds: int) -> Path:
    from tests.recipes import tiny_recipe, write_recipe

    recipe = tiny_recipe(tiny_folder(tmp / "data"), **{"train.device": "cpu", "train.epochs": 1,
                                                       "seeds": list(range(seeds))})  # fmt: skip
    return write_recipe(tmp / "tiny.yaml", recipe)


def interval(values: list[float]) -> tuple[float, float, float]:
    """Median and its 95% percentile-bootstrap interval."""
    import numpy as np
    from scipy.stats import bootstrap

    data = np.asarray(values)
    ci = bootstrap((data,), np.median, confidence_level=0.95, method="percentile", n_resamples=4000,
                   random_state=np.random.default_rng(0)).confidence_interval  # fmt: skip
    return float(np.median(data)), float(ci.low), float(ci.high)


def measure_arms(repeats: int, tmp: Path) -> dict[str, list[float]]:
    from concurrent.futures import ProcessPoolExecutor

    from bench.data.cache import cached_splits, shared
    from bench.execution.local import LocalExecutor, _no_main_module
    from bench.execution.progress import Progress
    from bench.execution.runner import RecipeRunner
    from bench.execution.task import TaskSpec, run_task, set_torch_threads
    from bench.recipe.load import load_recipe

    os.environ["BENCH_CACHE_DIR"] = str(tmp / "cache")
    loaded = load_recipe(tiny_recipe_file(tmp, 2 + len(ARMS) * repeats))
    runner = RecipeRunner(loaded, results_dir=tmp / "results", tracking_uri=f"sqlite:///{tmp / 'm.db'}")
    client = runner.open_store()
    exp_id, parent_id = runner.start(client, Progress(0, live=False))
    spec = TaskSpec(loaded.name, str(runner.results_dir), runner.uri, exp_id, parent_id, inputs=runner.inputs)
    cached_splits(loaded.variants[0].body.data)
    splits = shared()
    set_torch_threads(workers=1)  # as the child does: in-process trains with the same threads
    received: list[float] = []  # when run_one had the row: the rest of its time is the child's exit

    class Timed(LocalExecutor):
        @staticmethod
        def _receive(conn):
            message = LocalExecutor._receive(conn)
            received.append(time.perf_counter())
            return message

    executor = Timed()
    ctx = executor.context()
    variants = iter(loaded.variants)
    run_task(spec, next(variants), client=client)  # first in-process run: lazy imports, MLflow setup
    executor.run_one(spec, next(variants), splits)  # starts the forkserver (once per command)

    def pool_args(variant):
        from multiprocessing.reduction import DupFd

        sys.stdout.flush(), sys.stderr.flush()
        return (spec, variant, splits, False, (DupFd(1), DupFd(2)), dict(os.environ), {}, os.getpid())

    def submit(pool, variant):
        with _no_main_module():  # as run_one: a worker forked here does not run this script again
            return pool.submit(_module()._pool_child, *pool_args(variant)).result()

    pool = ProcessPoolExecutor(max_workers=1, mp_context=ctx, max_tasks_per_child=1)

    def run_pool_new(variant):
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx, max_tasks_per_child=1) as fresh:
            return submit(fresh, variant)

    run = {
        "inproc": lambda v: run_task(spec, v, client=client),
        "child": lambda v: executor.run_one(spec, v, splits),
        "pool": lambda v: submit(pool, v),
        "pool-new": run_pool_new,
    }
    times: dict[str, list[float]] = {arm: [] for arm in ARMS}
    times["child-exit"] = []
    for i in range(repeats):
        for arm in ARMS:
            t0 = time.perf_counter()
            row = run[arm](next(variants))
            times[arm].append(time.perf_counter() - t0)
            if arm == "child":
                times["child-exit"].append(t0 + times[arm][-1] - received[-1])
            assert row["status"] == "finished", (arm, row)  # the result came back, and it trained
        print(
            f"  repeat {i + 1}/{repeats}: " + "  ".join(f"{a} {times[a][-1]:.2f}s" for a in ARMS), flush=True
        )
    pool.shutdown()
    return times


def pool_carries(tmp: Path) -> list[str]:
    """What a ProcessPoolExecutor on the forkserver carries, checked; and what it cannot, said."""
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool
    from multiprocessing.reduction import DupFd

    from bench.execution.local import LocalExecutor

    ctx = LocalExecutor().context()
    out = tmp / "stdout.txt"
    with open(out, "wb") as fh, ProcessPoolExecutor(1, mp_context=ctx, max_tasks_per_child=1) as pool:
        pid = pool.submit(_module()._write_stdout, DupFd(fh.fileno())).result()
    lines = [
        f"stdout of the driver reaches the worker (pid {pid}): {out.read_text().strip() == 'written by the pool worker'}"
    ]
    with ProcessPoolExecutor(1, mp_context=ctx, max_tasks_per_child=1) as pool:
        try:
            pool.submit(_module()._sigkill_self).result()
            lines.append("SIGKILLed worker: no error (NOT caught)")
        except BrokenProcessPool as exc:
            lines.append(
                f"SIGKILLed worker -> BrokenProcessPool ({exc}); exit code not given, pool unusable after"
            )
    lines.append("signal forwarding: the worker's pid is only in the private ProcessPoolExecutor._processes")
    lines.append("parent death: _die_with_driver runs inside _child, so it carries unchanged")
    return lines


def bench_run_wall(tree: Path, recipe: Path, seeds: int, tmp: Path) -> tuple[float, float]:
    """Wall time of ``bench run`` with ``tree``'s bench on the first ``seeds`` seeds (own store),
    and the sum of its runs' own recorded ``time/wall_s`` (training and evaluation)."""
    import pandas as pd

    out = Path(tempfile.mkdtemp(dir=tmp, prefix=f"{tree.name}-{seeds}-"))
    env = {**os.environ, "PYTHONPATH": str(tree), "BENCH_CACHE_DIR": str(out / "cache")}
    cmd = [sys.executable, "-m", "bench.cli", "run", str(recipe), f"seeds={list(range(seeds))}",
           "--results-dir", str(out / "results"), "--tracking-uri", f"sqlite:///{out / 'm.db'}"]  # fmt: skip
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=out, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"bench run at {tree} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    (runs_csv,) = (out / "results").glob("*/runs.csv")
    return wall, float(pd.read_csv(runs_csv)["time/wall_s"].sum())


def measure_commands(before: Path, n: int, repeats: int, tmp: Path) -> dict[str, list[float]]:
    """Per extra variant, the slope between a 1- and an n-variant command: of the whole wall time
    (``<tree>``) and of the wall time outside the runs' recorded time (``<tree> outside runs``)."""
    recipe = tiny_recipe_file(tmp / "cli", n)
    trees = {"before": before, "after": REPO}
    slopes: dict[str, list[float]] = {}
    for i in range(repeats):
        for name, tree in trees.items():
            (one, rec_one), (many, rec_many) = (
                bench_run_wall(tree, recipe, 1, tmp),
                bench_run_wall(tree, recipe, n, tmp),
            )
            whole, outside = (many - one) / (n - 1), ((many - rec_many) - (one - rec_one)) / (n - 1)
            slopes.setdefault(name, []).append(whole)
            slopes.setdefault(f"{name} outside runs", []).append(outside)
            slopes.setdefault(f"{name} 1-variant command", []).append(one)  # start-up and exit included
            print(f"  bench run repeat {i + 1}/{repeats} {name}: 1 variant {one:.2f}s, {n} variants {many:.2f}s "
                  f"-> {whole:.2f}s per extra variant, {outside:.2f}s of it outside the runs' time/wall_s", flush=True)  # fmt: skip
    return slopes


def print_arms(times: dict[str, list[float]], carries: list[str]) -> None:
    import numpy as np

    print(f"\nper-variant wall time, tiny 1-epoch CPU variant, {len(times['inproc'])} interleaved repeats:")
    for arm in ARMS:
        print(f"  {arm:9s} median {np.median(times[arm]):6.2f} s")
    print("overhead over in-process (paired, median [95% bootstrap CI]):")
    for arm in ARMS[1:]:
        med, low, high = interval([t - p for t, p in zip(times[arm], times["inproc"])])
        print(f"  {arm:9s} {med:+6.2f} s  [{low:+.2f}, {high:+.2f}]")
    med, low, high = interval([p - c for p, c in zip(times["pool"], times["child"])])
    print(f"  pool - child (paired):  {med:+6.2f} s  [{low:+.2f}, {high:+.2f}]")
    exit_s = np.median(times["child-exit"])
    print(f"  child: row received -> child reaped (in run_one's time): median {exit_s:.2f} s")
    print("what the pool carries:")
    for line in carries:
        print(f"  {line}")


def print_commands(slopes: dict[str, list[float]], before: Path) -> None:
    import numpy as np

    print(f"bench run, wall per extra variant; before: {before}, after: {REPO}")
    for name, values in slopes.items():
        print(f"  {name:20s} median {np.median(values):.2f} s of {[round(v, 2) for v in values]}")
    for what in ("", " outside runs", " 1-variant command"):
        after, prior = slopes[f"after{what}"], slopes[f"before{what}"]
        if len(after) >= 3:
            med, low, high = interval([a - b for a, b in zip(after, prior)])
            print(f"  after - before{what} (paired): median {med:+.2f} s  [{low:+.2f}, {high:+.2f}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=8, help="interleaved rounds of the arms (>= 2)")
    parser.add_argument("--out", type=Path, default=None, help="write the raw times as JSON here")
    parser.add_argument("--before", type=Path, default=None, help="a checkout whose `bench run` to compare")
    parser.add_argument("--variants", type=int, default=5, help="N of the N-variant `bench run` (>= 2)")
    parser.add_argument("--cli-repeats", type=int, default=2, help="rounds of the `bench run` comparison")
    parser.add_argument("--commands-only", action="store_true", help="only the `bench run` comparison")
    args = parser.parse_args()
    if args.repeats < 2 or args.variants < 2:
        parser.error("--repeats and --variants must be at least 2")
    if args.commands_only and not args.before:
        parser.error("--commands-only needs --before TREE")
    sys.path.insert(0, str(REPO))  # tests.conftest, tests.recipes
    start_load = load_average()
    print(f"load average at start: {start_load} ({os.cpu_count()} CPUs)", flush=True)
    times, carries, slopes = {}, [], {}
    with tempfile.TemporaryDirectory(prefix="child-overhead-") as name:
        tmp = Path(name)
        if not args.commands_only:
            times = measure_arms(args.repeats, tmp)
            carries = pool_carries(tmp)
        if args.before:
            slopes = measure_commands(args.before, args.variants, args.cli_repeats, tmp)
    if times:
        print_arms(times, carries)
    if slopes:
        print_commands(slopes, args.before)
    end_load = load_average()
    print(f"load average at end: {end_load}")
    if args.out:
        args.out.write_text(json.dumps({"times": times, "bench_run_slopes": slopes, "load_start": start_load,
                                        "load_end": end_load, "carries": carries}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
