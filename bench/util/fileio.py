"""Atomic file writes: a temp file beside the target, fsync, ``os.replace``. A process killed
mid-write leaves the old file (or none), never a half-written one. Also ``expand_path``, for the
paths a recipe names (torch-free: run identity reads it before anything trains)."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any


def expand_path(path: str | Path) -> Path:
    """Expand ``~`` and ``$VARS``; ``$BENCH_RESULTS_DIR`` defaults to ``results`` (the CLI sets it
    to ``--results-dir``), so a recipe can start from weights an earlier recipe wrote."""
    env = {"BENCH_RESULTS_DIR": "results", **os.environ}
    text = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), m.group(0)), str(path))
    return Path(text).expanduser()


# torch.save's messages when the disk fills under it (the OSError is lost inside its C++ writer).
_TORCH_DISK_FULL = ("unexpected pos", "PytorchStreamWriter failed writing", "file write failed")


@contextlib.contextmanager
def disk_full_as_error(path: Path) -> Iterator[None]:
    """Say "no space left on the device holding <folder>" where the OS says ENOSPC and where torch
    says ``[enforce fail at inline_container.cc:672] unexpected pos``."""
    from bench.errors import DiskFullError

    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise DiskFullError(_disk_full_text(path)) from exc
    except RuntimeError as exc:
        if not any(text in str(exc) for text in _TORCH_DISK_FULL):
            raise
        raise DiskFullError(_disk_full_text(path)) from exc


def _disk_full_text(path: Path) -> str:
    return (
        f"no space left on the device holding {Path(path).parent} (writing {Path(path).name}): free space "
        "there, or move results with --results-dir (the data cache with BENCH_CACHE_DIR)"
    )


def atomic_write(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Call ``write(fh)`` on a temp file beside ``path``, then move it into place durably; a full
    disk is reported as one (``DiskFullError``), not as torch's ``unexpected pos``."""
    with disk_full_as_error(path):
        _atomic_write(Path(path), write)


def _atomic_write(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically and durably."""
    import torch

    atomic_write(path, lambda fh: torch.save(obj, fh))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text.encode()))


def atomic_copy(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` so that ``dst`` is either the old file or the whole new one."""

    def copy(fh: IO[bytes]) -> None:
        with open(src, "rb") as source:
            shutil.copyfileobj(source, fh)

    atomic_write(dst, copy)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (and machines sharing the folder over a file system
    with working POSIX locks), held for the ``with`` block; released if the process dies."""
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.lockf(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(fh, fcntl.LOCK_UN)
