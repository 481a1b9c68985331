"""Where a study lives: an Optuna RDB storage, so Optuna itself keeps the trials and their
liveness (heartbeats, ``fail_stale_trials``, ``RetryHeartbeatStaleTrialCallback``).

* Default: SQLite ``results/<study>/optuna.db``, for one or several worker processes on this
  machine (a busy timeout lets them take turns on the file; measured in the tune README section).
* ``--storage URL``: any SQLAlchemy URL; ``postgresql+psycopg2://...`` for workers on many machines.
* ``journal:PATH`` (or a bare path): a journal file of an older bench, opened with Optuna's own
  ``JournalStorage``; it has no heartbeats, so a killed worker's trial is not retried there. An old
  ``results/<study>/optuna.journal`` is copied into ``optuna.db`` once (``migrate_journal``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import RecipeError, TrackingError, message_line
from bench.tracking.uris import redact_text
from bench.tracking.uris import redact_uri as redact  # one rule for every URI bench shows

DB_NAME = "optuna.db"
JOURNAL_NAME = "optuna.journal"  # an older bench's default
STALE_RETRIES = 2  # a trial whose worker died is retried at most this often (then it counts as failed)
SQLITE_BUSY_TIMEOUT = 60  # seconds a process waits for another's write on the SQLite file


@dataclass(frozen=True)
class StorageSpec:
    kind: str  # rdb | journal
    url: str
    path: Path | None = None  # the SQLite database file, or the journal file

    @property
    def display(self) -> str:
        return str(self.path) if self.path is not None else redact(self.url)

    @property
    def dialect(self) -> str:
        return "journal" if self.kind == "journal" else self.url.split(":", 1)[0].split("+", 1)[0]

    def open(self, heartbeat_interval: int, grace_period: int) -> Any:
        """The Optuna storage; an RDB one beats while a trial runs and retries a dead worker's trial."""
        if self.kind == "journal":
            from optuna.storages import JournalStorage
            from optuna.storages.journal import JournalFileBackend

            return JournalStorage(JournalFileBackend(str(self.path)))
        from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

        engine = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT}} if self.dialect == "sqlite" else {}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # experimental-API warnings
                return RDBStorage(
                    self.url, engine_kwargs=engine, heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=STALE_RETRIES),
                )  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - sqlalchemy/driver errors of many kinds
            raise TrackingError(
                f"cannot open the Optuna storage '{self.display}': {redact_text(message_line(exc), self.url)}"
            ) from None


def resolve_storage(url: str | None, out_dir: Path, workers: int) -> StorageSpec:
    if not url:
        path = (out_dir / DB_NAME).resolve()
        return StorageSpec("rdb", f"sqlite:///{path}", path)
    if url.startswith("journal:") or "://" not in url:
        path = Path(url.removeprefix("journal:")).expanduser()
        if workers > 1:
            raise RecipeError(
                f"a journal file serves one worker (--workers {workers}): Optuna keeps no heartbeats "
                "there, so a killed worker's trial would never be retried; drop --storage for the "
                "SQLite default under results/<study>/, or use a PostgreSQL URL",
                source="--storage",
            )
        return StorageSpec("journal", f"journal:{path}", path)
    if url.startswith(("redis", "grpc")):
        raise RecipeError(
            "only SQLAlchemy URLs (sqlite:///, postgresql+psycopg2://, mysql://) and journal files are "
            "supported",
            source="--storage",
        )
    if url.startswith("sqlite:"):
        db = url.split(":///", 1)[-1]
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)
            return StorageSpec("rdb", url, Path(db).resolve())
    return StorageSpec("rdb", url)


def migrate_journal(spec: StorageSpec, out_dir: Path, study_name: str) -> str | None:
    """Copy a study from an older bench's ``optuna.journal`` into the new default ``optuna.db``,
    once (the journal is kept). A note, or None when there is nothing to copy."""
    import os

    import optuna

    journal = out_dir / JOURNAL_NAME
    if spec.path != (out_dir / DB_NAME).resolve() or spec.path.exists() or not journal.exists():
        return None
    try:
        old = StorageSpec("journal", f"journal:{journal}", journal).open(1, 2)
        if study_name not in optuna.get_all_study_names(old):
            return None
        partial = spec.path.with_name(f"{DB_NAME}.partial")  # a kill mid-copy leaves no half study
        partial.unlink(missing_ok=True)
        optuna.copy_study(from_study_name=study_name, from_storage=old, to_storage=f"sqlite:///{partial}")
        os.replace(partial, spec.path)
    except Exception as exc:  # noqa: BLE001 - a journal corrupt in the middle, a newer format
        raise TrackingError(
            f"cannot read the older journal {journal} ({redact_text(message_line(exc))}); move it away to start "
            "the study afresh in optuna.db, or open it with --storage journal:PATH"
        ) from None
    return f"copied study {study_name} from {journal} (an older bench's journal, kept) into {spec.path}"
