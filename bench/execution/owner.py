"""One owner per recipe: ``bench run`` holds the ``flock`` ``<results>/.<recipe>.lock`` for the
whole command. The kernel (or the file server of a shared folder) releases it when its process
dies, however it dies, on any host: a second command is refused at once (exit 4, nothing
changed), and the same command after a SIGKILL owns the recipe at once and resumes it. Beside
the recipe's folder, not in it: a command that stops before recording leaves no folder behind.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.errors import BenchError


class RecipeBusy(BenchError):
    """Another live command owns the recipe."""

    exit_code = 4


@contextlib.contextmanager
def owning(results_dir: str | Path, recipe: str) -> Iterator[None]:
    """Own ``recipe`` for the ``with`` block, or raise RecipeBusy at once, naming the owner."""
    from filelock import Timeout

    path, lock = _lock(results_dir, recipe)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except Timeout:
        holder = path.read_text().strip() or "another bench run"
        raise RecipeBusy(
            f"busy: recipe '{recipe}' is being run by {holder} (it holds {path}); nothing was changed: "
            "run the same command again once that one has ended (more GPUs or machines: --executor ray)"
        ) from None
    except OSError as exc:  # read-only, or no flock (an NFS without locking, Lustre without -o flock)
        raise BenchError(f"cannot lock {path} to own recipe '{recipe}': {exc}") from None
    try:
        with contextlib.suppress(OSError):  # for the message above: information, not ownership
            path.write_text(f"bench run pid {os.getpid()} on {socket.gethostname()}\n")
        yield
    finally:
        lock.release()


def looks_busy(results_dir: str | Path, recipe: str) -> bool:
    """Whether another command owns ``recipe`` now: a probe (take the lock and let go at once),
    creating nothing, for what a command may start before it owns the recipe. ``owning`` decides."""
    from filelock import Timeout

    path, lock = _lock(results_dir, recipe)
    if not path.exists():
        return False
    try:
        with lock:
            return False
    except Timeout:
        return True
    except OSError:
        return False  # owning() says what is wrong


def _lock(results_dir: str | Path, recipe: str) -> tuple[Path, Any]:
    """The recipe's lock file beside its folder, and a non-blocking lock on it."""
    from filelock import FileLock

    path = Path(results_dir) / f".{recipe}.lock"
    # No soft-lock fallback: a lock file that outlives a killed process is the lease problem again.
    return path, FileLock(path, blocking=False, fallback_to_soft=False)
