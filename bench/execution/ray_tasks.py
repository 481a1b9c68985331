"""What runs inside a Ray worker process: one (variant, seed) through ``run_task``, or one tuning
worker through ``worker_loop``; plus the board on which tasks say where they run.

Every task first drops ``MLFLOW_RUN_ID`` (inherited from a driver started inside an MLflow run, it
would redirect every variant's logging into that one run) and hides the GPUs Ray did not give it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

from bench.execution.order import POSITION_TAG


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


def task_threads() -> str:
    """Torch threads for this task: the CPUs Ray granted it (``--cpus-per-variant``; tasks on a
    node together hold no more CPUs than the node has), at least 1, at most this worker's cores.
    Returns the CPUs granted, as recorded (tag ``bench.cpus_granted``; the threads: ``env.torch_threads``)."""
    import ray

    from bench.execution.task import granted_cores, set_torch_threads

    cpus = float(ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0) or 1.0)
    set_torch_threads(cores=min(max(int(cpus), 1), granted_cores()))
    return f"{cpus:g}"


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
    from bench.execution.task import run_task

    sync_import_paths()  # user modules beside the recipe (model.name: mymodels:Net)
    where = placement()
    threads = task_threads()
    if board is not None:
        board.start.remote(token, where)
    progress = Progress(1, live=False)
    progress.name = variant.name
    tags = {"bench.gpu": where["gpu"], "bench.node": where["node"], "bench.ray_node": where["node_id"],
            "bench.cuda_visible_devices": where["cuda_visible_devices"], "bench.cpus_granted": threads}  # fmt: skip
    if position is not None:
        tags[POSITION_TAG] = str(position)
    with cancellable():
        row = run_task(spec, variant, progress=progress, run_tags=tags)
    return row, where
