"""Where a study lives, and keeping it loadable.

* Default: Optuna's journal file ``results/<study>/optuna.journal`` (many local worker processes).
* ``--storage URL``: any Optuna storage URL: ``postgresql+psycopg2://...`` for workers on many
  machines, ``sqlite:///...`` for a single worker; a path (or ``journal:PATH``) is a journal file.

Crash safety (journal): a worker killed mid-append leaves a torn last line; Optuna 5 then fails
every later ``load_study`` once anything is appended after it. ``repair_journal`` (run under
the journal's own lock) truncates a torn tail, or salvages a line a later append was glued onto,
keeping a backup; corruption it cannot repair is refused with a clear message.

Trials left RUNNING by a dead worker: RDB storages use Optuna's heartbeat +
``RetryHeartbeatStaleTrialCallback``; the journal has neither, so each worker holds an ``flock`` on its
own file under ``workers/`` and tags the trials it runs with it; ``sweep_stale`` fails the
RUNNING trials whose worker's lock is free and re-queues each once with the same parameters.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import socket
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import RecipeError, TrackingError

JOURNAL_NAME = "optuna.journal"
WORKER_ATTR = "bench.worker"
REASON_ATTR = "bench.fail_reason"
MLFLOW_ATTR = "bench.mlflow_run_id"
HEARTBEAT_INTERVAL = 30
GRACE_PERIOD = 120


def redact(url: str) -> str:
    """The URL with its password hidden, for messages and tags."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        user = cred.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


@dataclass(frozen=True)
class StorageSpec:
    kind: str  # journal | rdb
    url: str
    path: Path | None = None  # the journal file

    @property
    def display(self) -> str:
        return str(self.path) if self.kind == "journal" else redact(self.url)

    @property
    def is_postgres(self) -> bool:
        return self.url.startswith(("postgresql", "postgres"))

    def open(self) -> Any:
        """The Optuna storage object (journal backend or RDB with heartbeats + one retry)."""
        if self.kind == "journal":
            from optuna.storages import JournalStorage
            from optuna.storages.journal import JournalFileBackend

            self.path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(self.path)))
        from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # experimental-API warnings
                callback = RetryHeartbeatStaleTrialCallback(max_retry=1)
            return RDBStorage(
                self.url,
                heartbeat_interval=HEARTBEAT_INTERVAL,
                grace_period=GRACE_PERIOD,
                heartbeat_stale_trial_callback=callback,
            )
        except Exception as exc:  # noqa: BLE001 - sqlalchemy/driver errors of many kinds
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise TrackingError(f"cannot open the Optuna storage '{self.display}': {first}") from None


def resolve_storage(url: str | None, out_dir: Path, workers: int) -> StorageSpec:
    if not url:
        return StorageSpec("journal", f"journal:{out_dir / JOURNAL_NAME}", out_dir / JOURNAL_NAME)
    if url.startswith("journal:") or "://" not in url:
        path = Path(url.removeprefix("journal:")).expanduser()
        return StorageSpec("journal", f"journal:{path}", path)
    if url.startswith("sqlite:"):
        if workers > 1:
            raise RecipeError(
                f"SQLite serves one worker only (--workers {workers} would contend for its lock and "
                "lose trials); drop --storage to use the journal file under results/<study>/ for "
                "several local workers, or use a PostgreSQL URL (postgresql+psycopg2://user:pw@host/db) "
                "for workers on one or many machines",
                source="--storage",
            )
        db = url.split(":///", 1)[-1]
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)
    elif url.startswith(("redis", "grpc")):
        raise RecipeError(
            "only journal files and SQLAlchemy URLs (postgresql+psycopg2://, mysql://, sqlite:///) "
            "are supported",
            source="--storage",
        )
    return StorageSpec("rdb", url)


# --- locks ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def file_lock(path: Path):
    """An exclusive ``flock`` (released by the kernel if the holder dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextlib.contextmanager
def journal_lock(path: Path):
    """Optuna's own journal lock (the one ``append_logs`` takes): nobody appends meanwhile."""
    from optuna.storages.journal import JournalFileSymlinkLock

    lock = JournalFileSymlinkLock(str(path))
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def _pg_advisory_lock(url: str, key: int):
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    finally:
        engine.dispose()


class StudyLock:
    """Serialises claiming a trial (count, sweep, ask) across every worker of a study: an
    ``flock`` beside a journal or SQLite file, a PostgreSQL advisory lock for PostgreSQL."""

    def __init__(self, spec: StorageSpec, study_name: str, out_dir: Path):
        self.spec, self.study_name, self.out_dir = spec, study_name, out_dir

    def __call__(self):
        if self.spec.is_postgres:
            import zlib

            return _pg_advisory_lock(self.spec.url, zlib.crc32(f"bench.tune:{self.study_name}".encode()))
        base = self.spec.path if self.spec.kind == "journal" else self.out_dir / "study"
        return file_lock(Path(f"{base}.bench-lock"))


# --- journal repair ---------------------------------------------------------------------------


def _parses(line: bytes) -> bool:
    try:
        json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return True


def _salvage(line: bytes) -> bytes | None:
    """A torn line with a later append glued on: keep the complete entry at its end."""
    start = line.rfind(b'{"op_code":')
    while start > 0:
        if _parses(line[start:]):
            return line[start:]
        start = line.rfind(b'{"op_code":', 0, start)
    return None


def _journal_problem(data: bytes) -> tuple[bytes, list[str]] | None:
    """None when the journal is sound; else (repaired bytes, what was done)."""
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    notes: list[str] = []
    kept: list[bytes] = []
    for number, line in enumerate(lines, start=1):
        if _parses(line):
            kept.append(line)
            continue
        fixed = _salvage(line)
        if fixed is None:
            if any(_parses(later) for later in lines[number:]):
                raise TrackingError(
                    f"the Optuna journal is corrupt at line {number} of {len(lines)} (not just a torn "
                    "end), so it cannot be repaired safely; restore a backup or move the file away "
                    "to start the study afresh"
                )
            notes.append(f"dropped {len(lines) - number + 1} unreadable line(s) at the end")
            break
        kept.append(fixed)
        notes.append(f"line {number}: dropped {len(line) - len(fixed)} torn bytes before a complete entry")
    if tail:
        notes.append(f"dropped a torn last line ({len(tail)} bytes, a worker killed mid-write)")
    if not notes:
        return None
    return b"".join(line + b"\n" for line in kept), notes


def repair_journal(path: Path) -> str | None:
    """Make the journal loadable again after a worker died mid-write, under the journal lock.
    Returns a note of what was repaired (a backup is kept beside it), or None when it was sound."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    with journal_lock(path):
        data = path.read_bytes()
        found = _journal_problem(data)
        if found is None:
            return None
        repaired, notes = found
        backup = path.with_name(f"{path.name}.torn-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.bak")
        shutil.copyfile(path, backup)
        tmp = path.with_name(path.name + ".repair")
        with open(tmp, "wb") as fh:
            fh.write(repaired)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    return f"repaired the Optuna journal {path}: {'; '.join(notes)} (backup: {backup.name})"


def tail_is_torn(path: Path) -> bool:
    """Cheap check before each claim: a sound journal ends with a newline."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() == 0:
                return False
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) != b"\n"
    except FileNotFoundError:
        return False


# --- worker liveness (journal) -----------------------------------------------------------------


class WorkerToken:
    """This process's liveness: an flock held on ``workers/<host>-<pid>-<id>.lock`` until exit."""

    def __init__(self, out_dir: Path):
        self.dir = out_dir / "workers"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.path = self.dir / f"{self.id}.lock"
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def worker_alive(out_dir: Path, worker_id: str) -> bool:
    path = out_dir / "workers" / f"{worker_id}.lock"
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return True
        raise
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        with contextlib.suppress(OSError):
            path.unlink()
        return False
    finally:
        os.close(fd)


def sweep_stale(study: Any, spec: StorageSpec, out_dir: Path) -> list[str]:
    """Fail trials left RUNNING by dead workers and re-queue each once with the same parameters.
    Call it under the study lock. Returns one note per swept trial."""
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    notes: list[str] = []
    if spec.kind == "rdb":
        before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        optuna.storages.fail_stale_trials(study)  # heartbeat-based; retries via the storage callback
        after = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        return [
            f"trial {n}: its worker stopped sending heartbeats; marked failed" for n in sorted(before - after)
        ]
    storage = study._storage
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental-API warning
        retry = RetryHeartbeatStaleTrialCallback(max_retry=1)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get(WORKER_ATTR)
        if worker and worker_alive(out_dir, worker):
            continue
        reason = f"its worker ({worker or 'unknown'}) died while running it"
        storage.set_trial_user_attr(trial._trial_id, REASON_ATTR, f"stale: {reason}")
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        failed = storage.get_trial(trial._trial_id)
        retried = len(failed.system_attrs.get("retry_history", [])) < 1
        retry(study, failed)
        notes.append(
            f"trial {trial.number}: {reason}; marked failed"
            + (
                ", re-queued once with the same parameters"
                if retried
                else " (already a retry: not re-queued)"
            )
        )
    return notes


def superseded(trials: list[Any]) -> set[int]:
    """Trial numbers replaced by a retry (they do not count towards n_trials)."""
    return {n for t in trials for n in t.system_attrs.get("retry_history", [])}
