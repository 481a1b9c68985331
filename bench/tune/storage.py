"""Where a study lives.

* Default: Optuna's journal file ``results/<study>/optuna.journal`` (many local worker processes),
  through ``journal.RepairingJournalBackend``.
* ``--storage URL``: any Optuna storage URL: ``postgresql+psycopg2://...`` for workers on many
  machines, ``sqlite:///...`` for a single worker; a path (or ``journal:PATH``) is a journal file.
  MySQL serves one worker: bench has no cross-machine claim lock for it.

RDB storages get Optuna's heartbeat with ``RetryHeartbeatStaleTrialCallback``; the journal
storage has no heartbeat in Optuna, so ``liveness`` writes one into the journal itself.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import RecipeError, TrackingError

JOURNAL_NAME = "optuna.journal"
STALE_RETRIES = 2  # a trial whose worker died is re-queued at most this often (then it counts as failed)


def redact(url: str) -> str:
    """The URL with its secrets hidden, for messages and tags (one rule for every URI bench shows)."""
    from bench.tracking.uris import redact_uri

    return redact_uri(url)


@dataclass(frozen=True)
class StorageSpec:
    kind: str  # journal | rdb
    url: str
    path: Path | None = None  # the journal file, or the SQLite database file

    @property
    def display(self) -> str:
        return str(self.path) if self.kind == "journal" else redact(self.url)

    @property
    def dialect(self) -> str:
        return "journal" if self.kind == "journal" else self.url.split(":", 1)[0].split("+", 1)[0]

    def open(self, heartbeat_interval: int, grace_period: int) -> Any:
        """The Optuna storage object (the raw one: heartbeats are recorded on it)."""
        if self.kind == "journal":
            from optuna.storages import JournalStorage

            from bench.tune.journal import RepairingJournalBackend

            return JournalStorage(RepairingJournalBackend(self.path))
        from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # experimental-API warnings
                return RDBStorage(
                    self.url,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=STALE_RETRIES),
                )
        except Exception as exc:  # noqa: BLE001 - sqlalchemy/driver errors of many kinds
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            from bench.tracking.uris import redact_text

            first = redact_text(first, self.url)
            raise TrackingError(f"cannot open the Optuna storage '{self.display}': {first}") from None


def resolve_storage(url: str | None, out_dir: Path, workers: int) -> StorageSpec:
    if not url:
        return StorageSpec("journal", f"journal:{out_dir / JOURNAL_NAME}", out_dir / JOURNAL_NAME)
    if url.startswith("journal:") or "://" not in url:
        path = Path(url.removeprefix("journal:")).expanduser()
        return StorageSpec("journal", f"journal:{path}", path)
    if url.startswith(("redis", "grpc")):
        raise RecipeError(
            "only journal files and SQLAlchemy URLs (postgresql+psycopg2://, mysql://, sqlite:///) "
            "are supported",
            source="--storage",
        )
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
            return StorageSpec("rdb", url, Path(db).resolve())
    if url.startswith("mysql") and workers > 1:
        raise RecipeError(
            f"MySQL serves one worker only (--workers {workers}): bench has no cross-machine lock "
            "to claim trials on MySQL, so workers could run more than n_trials; use a PostgreSQL URL "
            "(postgresql+psycopg2://user:pw@host/db) for several workers, or a journal file for "
            "workers on this machine",
            source="--storage",
        )
    return StorageSpec("rdb", url)
