"""The Ray executor: every (variant, seed) of a ``bench run`` becomes one Ray task, spread over the
GPUs of this machine or of a cluster; ``bench tune --executor ray`` runs its workers the same way.

Ray schedules (one GPU per task by default, fractions allowed), sets ``CUDA_VISIBLE_DEVICES`` and
retries a task whose worker process died (``max_retries``). The driver owns the recipe and is its
only dispatcher (owner.py): each (variant, seed) is submitted once, so a retry that finds its run
RUNNING knows it was its own dead attempt's and resumes it from the checkpoint (``run_task``); a
variant is never recorded twice. Rows come back as tasks finish; the driver writes ``runs.csv``
from the store. Tasks post where they run on a board (an actor) that the driver shows.

Every task first drops ``MLFLOW_RUN_ID`` (inherited from a driver started inside an MLflow run, it
would redirect every variant's logging into that one run) and hides the GPUs Ray did not give it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.execution.cluster import (
    RayOptions,
    alive_nodes,
    check_reachable,
    connected,
    gpus_per_task,
    task_env,
)
from bench.execution.order import POSITION_TAG
from bench.execution.task import TaskSpec, record_crash, run_task, set_torch_threads
from bench.measure.hardware import granted_cores
from bench.recipe.load import Variant

POLL_S = 1.0  # how often the driver looks at the board while waiting for tasks
STOP_WAIT = 60.0  # seconds cancelled tasks get to close their runs as interrupted


class Board:
    """A Ray actor: each task posts where it started (node, GPUs, pid); the driver reads it to show
    what runs where. A retry after a worker died posts again, from its new process."""

    def __init__(self) -> None:
        self.started: dict[str, dict[str, Any]] = {}

    def start(self, token: str, where: dict[str, Any]) -> None:
        self.started[token] = where

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return self.started


def placement() -> dict[str, Any]:
    """This task's node and GPUs (Ray's ids are the node's physical indices; Ray sets
    ``CUDA_VISIBLE_DEVICES`` to them). A task given no GPU sees none, so ``device: auto`` means CPU."""
    import ray

    os.environ.pop("MLFLOW_RUN_ID", None)
    ctx = ray.get_runtime_context()
    gpus = [str(g) for g in ctx.get_accelerator_ids().get("GPU", [])]
    if not gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    return {"node": ray.util.get_node_ip_address(), "node_id": ctx.get_node_id(), "gpus": gpus,
            "pid": os.getpid(), "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
            "gpu": gpu_tag(gpus)}  # fmt: skip


def gpu_tag(gpus: list[str]) -> str:
    """The ``bench.gpu`` tag: physical indices and model name, ``cpu`` without a GPU, and
    ``logical`` for GPUs declared to Ray on a machine without CUDA (tests)."""
    if not gpus:
        return "cpu"
    import torch

    if not torch.cuda.is_available():
        return f"{','.join(gpus)}: logical (no CUDA device)"
    names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
    return f"{','.join(gpus)}: {', '.join(names)}"


def describe(where: dict[str, Any]) -> str:
    gpus = where.get("gpus") or []
    return f"{where.get('node', '?')} " + (f"GPU {','.join(gpus)}" if gpus else "CPU")


def _on_sigint(signum: int, frame: Any) -> None:  # noqa: ARG001
    if signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, []):
        os.kill(os.getpid(), signal.SIGINT)  # a real signal now: held until the mask is lifted
        return
    raise KeyboardInterrupt("cancelled")


@contextlib.contextmanager
def cancellable() -> Iterator[None]:
    """Ray cancels a running task with ``_thread.interrupt_main()``, which calls the SIGINT handler
    directly: the signal mask with which a run's final status is written (``deferred_signals``)
    cannot hold that back, and a cancel could land between "finished" and the run's closing. This
    handler turns such a call, while SIGINT is masked, into a real SIGINT, delivered after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def train_variant(
    spec: Any, variant: Any, token: str, board: Any, position: int | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One (variant, seed) as a Ray task (``token`` names it on the board), trained through
    ``run_task``, which resumes the run a dead attempt of this task left; returns (row, where).
    ``position``: its place in the submission order (tag ``bench.position``)."""

    from bench.components.user_code import sync_import_paths
    from bench.execution.progress import Progress

    sync_import_paths()  # user modules beside the recipe (model.name: mymodels:Net)
    where = placement()
    cpus = set_ray_task_threads()
    board.start.remote(token, where)
    progress = Progress(1, live=False)
    progress.name = variant.name
    tags = {"bench.gpu": where["gpu"], "bench.node": where["node"], "bench.ray_node": where["node_id"],
            "bench.cuda_visible_devices": where["cuda_visible_devices"], "bench.cpus_granted": f"{cpus:g}"}  # fmt: skip
    if position is not None:
        tags[POSITION_TAG] = str(position)
    with cancellable():
        row = run_task(spec, variant, progress=progress, run_tags=tags)
    return row, where


class RayExecutor:
    """Runs a recipe's tasks as Ray tasks, as many at once as the cluster's resources allow."""

    def __init__(self, options: RayOptions | None = None):
        self.options = options or RayOptions()

    def run(self, spec: TaskSpec, variants: list[Variant], progress: Any) -> Iterator[dict[str, Any]]:
        with connected(self.options) as ray:
            # Workers may start in another directory (or on another node): absolute paths only.
            spec = replace(spec, results_dir=str(Path(spec.results_dir).resolve()))
            check_reachable(
                alive_nodes(ray),
                spec.tracking_uri,
                {"the results folder": Path(spec.results_dir)},
                self.options,
            )
            remote, board = submitter(
                ray, self.options, train_variant, max(spec.max_attempts - 1, 0), progress
            )
            keys = {v.run_key: v for v in variants}  # submitted in the run order; a key names a task
            tasks = {remote.remote(spec, v, key, board, position): (v.name, key)
                     for position, (key, v) in enumerate(keys.items(), 1)}  # fmt: skip

            def result(ref: Any, name: str, key: str) -> dict[str, Any]:
                try:
                    row, _ = ray.get(ref)
                except ray.exceptions.RayError as exc:  # every retry's worker died, or the task raised
                    return record_crash(spec, keys[key], f"Ray: {failure(exc)}")
                return row

            yield from Watch(ray, board, tasks, progress).results(result)


def set_ray_task_threads() -> float:
    """Torch threads of a Ray task: the CPUs Ray granted it (--cpus-per-variant; tasks on a node
    together hold no more than it has), at least 1, at most this worker's cores. Returns the CPUs."""
    import ray

    cpus = float(ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0) or 1.0)
    set_torch_threads(cores=min(max(int(cpus), 1), granted_cores()))
    return cpus


def submitter(ray: Any, options: RayOptions, func: Any, retries: int, progress: Any) -> tuple[Any, Any]:
    """``func`` as a Ray remote function with the resources each task gets, and the board."""
    gpus = gpus_per_task(ray, options)
    board = ray.remote(num_cpus=0)(Board).remote()
    remote = ray.remote(func).options(
        num_gpus=gpus, num_cpus=options.cpus, max_retries=retries, runtime_env={"env_vars": task_env()},
        name=f"bench-{func.__name__.replace('_', '-')}",
    )  # fmt: skip
    res = ray.cluster_resources()
    progress.note(
        f"ray: {gpus:g} GPU and {options.cpus:g} CPU per task; cluster of {alive_nodes(ray)} node(s) with "
        f"{res.get('GPU', 0):g} GPU, {res.get('CPU', 0):g} CPU"
    )
    return remote, board


def failure(exc: BaseException) -> str:
    """What a RayError says, with the task's own exception rather than Ray's wrapper."""
    from ray.exceptions import RayTaskError

    cause = exc.cause if isinstance(exc, RayTaskError) and exc.cause is not None else exc
    first = (str(cause).strip().splitlines() or [""])[0][:300]
    return f"{type(cause).__name__}: {first}"


class Watch:
    """The driver's side of the tasks in flight (``ref -> (name, token)``): shows what started
    where, hands back each task's result as it finishes, and cancels every task on Ctrl-C,
    SIGTERM or when its consumer stops."""

    def __init__(self, ray: Any, board: Any, tasks: dict[Any, tuple[str, str]], progress: Any):
        self.ray, self.board, self.tasks, self.progress = ray, board, tasks, progress
        self.total = len(tasks)
        self.done = 0
        self.where: dict[str, dict[str, Any]] = {}  # token -> where its latest attempt started

    def results(self, result: Any) -> Iterator[Any]:
        try:
            while self.tasks:
                ready, _ = self.ray.wait(list(self.tasks), num_returns=1, timeout=POLL_S)
                self.announce()
                for ref in ready:
                    name, token = self.tasks.pop(ref)
                    value = result(ref, name, token)
                    self.done += 1
                    self.progress.name = f"{name} ({describe(self.where.get(token, {}))})"
                    yield value
        except BaseException:
            self.cancel()
            raise

    def announce(self) -> None:
        try:
            started = self.ray.get(self.board.snapshot.remote(), timeout=10)
        except Exception:  # noqa: BLE001 - the board is for display only
            return
        names = dict(t[::-1] for t in self.tasks.values())  # token -> name, of tasks in flight
        for token, where in started.items():
            if token not in names or self.where.get(token, {}).get("pid") == where["pid"]:
                continue
            again = " again (its previous worker died)" if token in self.where else ""
            self.where[token] = where
            running = sum(1 for t in names if t in self.where)
            self.progress.note(
                f"[{self.done}/{self.total} done, {running} running, {len(names) - running} waiting] "
                f"{names[token]} started{again} on {describe(where)}"
            )

    def cancel(self) -> None:
        """Cancel every task; running ones get a KeyboardInterrupt and close their runs as
        interrupted (resumable), which is waited for."""
        refs = list(self.tasks)
        for ref in refs:
            self.ray.cancel(ref)
        if refs:
            self.ray.wait(refs, num_returns=len(refs), timeout=STOP_WAIT)
