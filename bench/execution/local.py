"""The local executor: every (variant, seed) in its own child process, one after the other.

A variant that kills its process (OOM killer, segfault, CUDA fatal error) cannot touch the next
one, and each variant's peak memory and CUDA context are its own. Children come from a
forkserver that imported torch, MLflow and bench once, and receive the recipe's decoded data as
shared-memory tensors, so a child costs a fork, not an import and a decode (``nox -s
benchmark`` prints the overhead per variant).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
import time
import types
from collections.abc import Iterator
from multiprocessing.reduction import DupFd
from typing import Any

from bench.errors import Terminated
from bench.execution.order import POSITION_TAG
from bench.execution.task import TaskSpec, record_crash, run_task, set_torch_threads
from bench.recipe.load import Variant

PRELOAD = [
    "bench.engine.loop",
    "bench.execution.recorded",
    "bench.execution.task",
    "mlflow.tracking",
    "timm",
    # what a child's first open of a local MLflow store imports: 0.85 s per variant, unless preloaded
    "mlflow.store.tracking.sqlalchemy_store",
    "sqlalchemy.dialects.sqlite",
    "alembic.command",
    "alembic.config",
    "bench.execution.forkserver_ready",  # last: freezes the heap, lets go of the stdout/stderr
]
WATCH_INTERVAL_S = 0.5  # how often the driver is looked at where no pidfd can wait on it


def _gone(pid: int) -> bool:
    """No such process, or one that exited and waits to be reaped (a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _die_with_driver(driver: int) -> None:
    """SIGKILL this child as soon as its driver is gone, even by SIGKILL (which runs no handler):
    else it would finish its variant behind a runs.csv and a parent run nobody updates. Not
    PR_SET_PDEATHSIG: the child's parent is the forkserver, which outlives the driver (every child
    holds the forkserver's "alive" pipe). A daemon thread waits on a pidfd of the driver (Linux
    5.3+), else looks at /proc every WATCH_INTERVAL_S. Linux only; elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return

    def watch() -> None:
        try:
            fd = os.pidfd_open(driver)
        except OSError:  # gone already, or no pidfd here (an old kernel, a seccomp filter)
            fd = None
        if fd is not None and not _gone(driver):
            select.select([fd], [], [])  # readable once the driver has exited
        while not _gone(driver):  # without a pidfd: look now and then
            time.sleep(WATCH_INTERVAL_S)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="bench-driver-watch", daemon=True).start()


def _child(
    spec: TaskSpec, variant: Variant, splits: dict, conn: Any, live: bool | None, stdio: tuple, env: dict,
    run_tags: dict[str, str] | None = None, driver: int | None = None, pace: tuple[int, float] = (1, 60.0),
) -> None:  # fmt: skip
    """Entry of a child process: train one variant, send its row back. Its stdout/stderr and
    environment are the driver's current ones (the forkserver's may be older), so progress lands
    where the user looks and settings (threads, BENCH_* variables) are the driver's. One child runs
    at a time: it gets every granted core as torch threads (fewer if OMP_NUM_THREADS says so;
    torch read that variable when the forkserver imported it, so it is applied here again). It
    dies with the driver (``driver``, its pid)."""
    if driver is not None:
        _die_with_driver(driver)
    for fd, dup in zip((1, 2), stdio):
        os.dup2(dup.detach(), fd)
    os.environ.clear()
    os.environ.update(env)
    from bench.components.user_code import sync_import_paths

    sync_import_paths()  # the recipe's folder: the forkserver may predate it
    set_torch_threads(workers=1)
    from bench.data import cache
    from bench.execution.progress import Progress
    from bench.util.signals import install_first_only

    install_first_only()
    cache.prime(splits)
    # the driver's runs left and heartbeat: the in-epoch heartbeat projects the study at this pace
    progress = Progress(pace[0], live=live, heartbeat_s=pace[1])
    progress.name = variant.name
    try:
        row = run_task(spec, variant, progress=progress, run_tags=run_tags)
    except KeyboardInterrupt as exc:  # the run is closed as interrupted; tell the driver how we ended
        conn.send({"interrupted": type(exc).__name__})
        raise SystemExit(143 if type(exc).__name__ == "Terminated" else 130) from None
    conn.send(row)


@contextlib.contextmanager
def _no_main_module() -> Iterator[None]:
    """Start a child without re-running the user's ``__main__`` in it (multiprocessing would
    import the calling script again: ``bench.run`` from a script or notebook must not recurse)."""
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def _noop_child(splits: dict) -> None:
    """An empty child, for measuring what a child costs (benchmarks/test_child_overhead.py)."""
    from bench.data import cache

    cache.prime(splits)


class LocalExecutor:
    """Runs tasks in child processes on this machine, one at a time.

    Why a forkserver ``Process`` per task and not ``ProcessPoolExecutor(max_tasks_per_child=1)``:
    by ``scripts/child_overhead.py`` (2 cores, load ~1) a tiny variant costs +0.33 s over in-process
    here, +0.24 s in a pool kept per command (it forks the next worker ahead), +0.43 s in a pool per
    variant; and the pool hides the worker's pid (signal forwarding), gives no exit code on a SIGKILL
    (record_crash) and is unusable after one (a new pool per crash). README: "What the child costs"."""

    on_this_machine = True  # the runs share this process's caches (pretrained weights, data)

    def __init__(self, live_progress: bool | None = False):
        """``live_progress`` None: a per-batch bar when the child's stderr (the driver's) is a terminal."""
        self.live = live_progress

    @staticmethod
    def context():
        """The forkserver context (one per process, as is its server), preloading ``PRELOAD``."""
        import torch.multiprocessing as mp

        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        return ctx

    @staticmethod
    def warm() -> None:
        """Start the forkserver now: it imports torch, MLflow and timm (~5 s on a 2-core box) while
        the driver checks the recipe and opens the store, instead of after, before the first variant.
        Starting it only spawns the process; the first child's start waits until the server has
        imported them. Idempotent."""
        from multiprocessing import forkserver

        LocalExecutor.context()  # sets the preload list, which the server reads when it starts
        with _no_main_module():  # as for a child: the server must not import the caller's script
            forkserver.ensure_running()

    def run(self, spec: TaskSpec, variants: list[Variant], progress: Any) -> Iterator[dict[str, Any]]:
        from bench.data import cache

        splits = cache.shared()  # what preflight decoded, as shared memory: children do not decode again
        for position, variant in enumerate(variants, 1):
            progress.variant_start(variant.name)
            yield self.run_one(
                spec, variant, splits, position, (progress.runs_to_train(), progress.heartbeat_s)
            )

    def run_one(
        self, spec: TaskSpec, variant: Variant, splits: dict, position: int | None = None,
        pace: tuple[int, float] = (1, 60.0),
    ) -> dict[str, Any]:  # fmt: skip
        """Train ``variant`` in a child process; ``position``: its place in the run order (tag
        ``bench.position``, 1 = first); ``pace``: the driver's runs left to train and heartbeat."""
        ctx = self.context()
        receive, send = ctx.Pipe(duplex=False)
        sys.stdout.flush(), sys.stderr.flush()
        stdio = (DupFd(1), DupFd(2))
        tags = {} if position is None else {POSITION_TAG: str(position)}
        proc = ctx.Process(
            target=_child,
            args=(spec, variant, splits, send, self.live, stdio, dict(os.environ), tags, os.getpid(), pace),
            name=f"bench {variant.name}",
        )
        with _no_main_module():
            proc.start()
        send.close()
        try:
            message = self._receive(receive)
            proc.join()
        except BaseException as exc:  # Ctrl-C or SIGTERM in the driver: the child closes its run first
            # A terminal's Ctrl-C reached the child too, a `kill -INT` of the driver did not: forward
            # it; the child acts on the first signal only.
            forward = signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT
            if proc.is_alive():
                os.kill(proc.pid, forward)
            proc.join(timeout=120)
            raise
        finally:
            receive.close()
        if message is None:  # died without a word: OOM killer, segfault, CUDA fatal error
            code = proc.exitcode
            how = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit {code}"
            return record_crash(spec, variant, how, pid=proc.pid)
        if "interrupted" in message:
            raise KeyboardInterrupt(f"the variant's process was interrupted ({message['interrupted']})")
        return message

    @staticmethod
    def _receive(conn: Any) -> dict[str, Any] | None:
        try:
            return conn.recv()
        except EOFError:
            return None
