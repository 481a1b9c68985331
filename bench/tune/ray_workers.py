"""``bench tune --executor ray``: the tuning workers as Ray tasks, through the Ray executor's
cluster checks, submission and watch (bench/execution/ray_executor.py). Here in tune, not in
execution: it drives the tuner (tune depends on execution, never the other way round)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bench.execution.cluster import RayOptions, alive_nodes, check_reachable, connected
from bench.execution.ray_executor import (
    Watch,
    cancellable,
    failure,
    placement,
    set_ray_task_threads,
    submitter,
)
from bench.tune.plan import build_plan
from bench.tune.prepare import open_worker
from bench.tune.worker import worker_loop


def tune_worker(options: Any, index: int, board: Any) -> None:
    """One tuning worker as a Ray task: the same loop as a spawned ``--workers`` process, on the
    same shared storage and the same stop rule (exactly ``n_trials``: README, tune section)."""
    where = placement()
    set_ray_task_threads()
    if board is not None:
        board.start.remote(str(index), where)
    with cancellable():
        worker_loop(open_worker(build_plan(options, quiet=True), index), index)


def run_tune_workers(options: Any, ray_options: RayOptions, say: Any) -> bool:
    """``bench tune --executor ray``: ``options.workers`` tuning workers as Ray tasks on the
    study's shared storage (the same worker loop and stop rule; a worker whose process died is
    retried, and its trial retried once its Optuna heartbeat goes stale). False when a worker
    failed (the study keeps what it recorded)."""
    with connected(ray_options) as ray:
        options = replace(options, results_dir=str(Path(options.results_dir).resolve()))
        plan = build_plan(options, quiet=True)
        paths = {"the results folder": Path(options.results_dir)}
        storage = plan.storage_spec()
        if storage.path is not None:
            paths["the Optuna storage"] = storage.path
        check_reachable(alive_nodes(ray), plan.tracking_uri, paths, ray_options)
        progress = SimpleNamespace(note=say, name="")  # all of a Progress that Watch uses
        remote, board = submitter(ray, ray_options, tune_worker, 2, progress)
        tasks = {
            remote.remote(options, i, board): (f"tuning worker {i}", str(i)) for i in range(options.workers)
        }
        failed: list[str] = []

        def result(ref: Any, name: str, token: str) -> None:
            try:
                ray.get(ref)
            except ray.exceptions.RayError as exc:
                failed.append(f"{name}: {failure(exc)}")

        for _ in Watch(ray, board, tasks, progress).results(result):
            pass
    if failed:
        say(
            f"error: {len(failed)} worker task(s) failed ({'; '.join(failed)}); the study keeps what they recorded"
        )
    return not failed
