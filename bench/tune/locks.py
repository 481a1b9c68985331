"""The study-wide claim lock: counting, sweeping dead trials and asking for the next trial happen
under it, so N workers finish exactly ``n_trials``. It must be a property of the storage, seen
by every command and machine that shares it: an ``flock`` beside a journal or SQLite file, a
PostgreSQL advisory lock for PostgreSQL. Every wait has a timeout (``tune.liveness.lock_timeout``)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

from bench.errors import TrackingError
from bench.tune.storage import StorageSpec

POLL = 0.1


def _timed_out(what: str, timeout: float) -> TrackingError:
    return TrackingError(
        f"waited {timeout:.0f}s for {what} and it is still held: another bench tune on this study "
        "is stuck while claiming a trial; stop it, or raise tune.liveness.lock_timeout"
    )


@contextlib.contextmanager
def file_lock(path: Path, timeout: float) -> Iterator[None]:
    """An exclusive ``flock`` (released by the kernel if its holder dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                if time.monotonic() > deadline:
                    raise _timed_out(f"the study lock {path}", timeout) from None
                time.sleep(POLL)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def pg_advisory_lock(url: str, key: int, timeout: float) -> Iterator[None]:
    """A session advisory lock (released by the server if the holder's connection drops)."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            deadline = time.monotonic() + timeout
            try_lock = sqlalchemy.text("SELECT pg_try_advisory_lock(:k)")
            while not conn.execute(try_lock, {"k": key}).scalar():
                conn.rollback()
                if time.monotonic() > deadline:
                    raise _timed_out(f"the PostgreSQL advisory lock {key}", timeout)
                time.sleep(POLL)
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
    finally:
        engine.dispose()


def advisory_key(study_name: str) -> int:
    return zlib.crc32(f"bench.tune:{study_name}".encode())


class StudyLock:
    def __init__(self, spec: StorageSpec, study_name: str, out_dir: Path, timeout: float):
        self.spec, self.study_name, self.timeout = spec, study_name, timeout
        # Beside the storage's file when it has one; MySQL and others (one worker) lock locally.
        self.path = Path(f"{spec.path or out_dir / 'study'}.bench-lock")

    def __call__(self) -> contextlib.AbstractContextManager[None]:
        if self.spec.dialect.startswith("postgres"):
            return pg_advisory_lock(self.spec.url, advisory_key(self.study_name), self.timeout)
        return file_lock(self.path, self.timeout)
