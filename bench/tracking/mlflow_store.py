"""MLflow recording: one parent run per ``bench run`` (or study), one nested child run per
variant. The store is created and migrated once, before anything trains (several processes
migrating a fresh SQLite file at once can leave it unopenable), and an unreachable store
fails the command up front with the URI in the message."""

from __future__ import annotations

import contextlib
import os
import traceback
from pathlib import Path
from typing import Any

from bench.errors import BenchError, StoreChoiceError, TrackingError, message_line
from bench.tracking.uris import has_secret, redact_text, redact_uri

PARENT_TAG = "mlflow.parentRunId"
MAX_PARAM_CHARS = 6000


def default_tracking_uri(results_dir: str | Path, explicit: str | None = None) -> str:
    """``--tracking-uri`` / recipe, else ``$MLFLOW_TRACKING_URI``, else an SQLite file under results/."""
    if explicit:
        return explicit
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{Path(results_dir).resolve() / 'mlflow.db'}"


def open_store(uri: str, *, create: bool = True):
    """Return an MlflowClient on ``uri``, with the store created and migrated. ``create=False``
    (commands that only read, e.g. ``bench report``): a missing SQLite file is an error, not a
    new empty store and folder where a mistyped ``--results-dir`` pointed."""
    import logging

    from mlflow.tracking import MlflowClient

    from bench.util.fileio import file_lock

    for name in ("alembic", "mlflow.store.db.utils"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if has_secret(uri):
        # MLflow prints "View run ... at: <tracking URI>/#/..." after every run, credentials included
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    for handler in logging.getLogger("mlflow").handlers:  # every MLflow log line passes its handler
        if redact_secrets not in handler.filters:
            handler.addFilter(redact_secrets)
    for name in ("mlflow.store.db.utils", "mlflow.utils.async_logging.async_logging_queue"):
        logger = logging.getLogger(name)
        if one_line_errors not in logger.filters:
            logger.addFilter(one_line_errors)
    refuse_file_store(uri)
    check_server_answers(uri)
    # Two processes migrating one fresh SQLite file can break it; a server migrates under its own lock.
    db = sqlite_file(uri)
    if db is not None and not create and not db.exists():
        raise BenchError(
            f"no MLflow tracking store at {db}: run the recipe first, or pass the --results-dir / "
            "--tracking-uri its `bench run` used"
        )
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    lock = contextlib.nullcontext() if db is None else file_lock(db.parent / f"{db.name}.lock")
    try:
        with lock:
            client = MlflowClient(tracking_uri=uri)
            client.search_experiments(max_results=1)
            relocate_artifacts(uri)
    except Exception as exc:  # noqa: BLE001 - mlflow raises many types for bad stores
        first = message_line(exc)
        hint = ""
        if "database is locked" in first:
            hint = (" (another process held the SQLite file locked for over 20 s; SQLite suits one machine "
                    "and a few processes: use a database server, e.g. postgresql://, for more)")  # fmt: skip
        elif "malformed" in first or "not a database" in first or "no such table" in first:
            hint = " (the store is damaged: restore it from a copy, or start a new one with --tracking-uri)"
        raise TrackingError(
            f"cannot open the MLflow tracking store '{redact_uri(uri)}': {redact_text(first, uri)}{hint}"
        ) from None
    return client


def refuse_file_store(uri: str) -> None:
    """MLflow's file store (``file:`` or a bare path) cannot hold bench's runs: ``train/lr`` is a
    metric and ``train/lr/<group>`` one below it, a file and a folder of one name, so every run
    trained and then failed to record. MLflow 3 also refuses it unless MLFLOW_ALLOW_FILE_STORE is set."""
    from urllib.parse import urlparse

    if urlparse(uri).scheme in ("", "file"):
        raise StoreChoiceError(
            f"tracking URI '{redact_uri(uri)}' is an MLflow file store, which cannot record bench's "
            "metrics (train/lr beside train/lr/<group>); use an SQLite file, e.g. "
            "--tracking-uri sqlite:///results/mlflow.db (the default), or a server URL"
        )


def check_server_answers(uri: str, timeout: float = 10.0) -> None:
    """A tracking server that nothing answers for fails at once: MLflow's HTTP client retries a
    refused connection with backoff for about 4 minutes, printing nothing, before it gives up."""
    import socket
    from urllib.parse import urlparse

    parts = urlparse(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as exc:
        raise TrackingError(
            f"cannot open the MLflow tracking store '{redact_uri(uri)}': nothing answers at "
            f"{parts.hostname}:{port} ({exc.strerror or type(exc).__name__}); start the tracking server "
            "(mlflow server ...) or pass another --tracking-uri"
        ) from None


def redact_secrets(record: Any) -> bool:
    """Log filter: an MLflow log line without the credentials of any URL it quotes (its REST
    client names the tracking URI, basic auth included, in every failed request)."""
    message = record.getMessage()
    if "://" in message:
        record.msg, record.args = redact_text(message), ()
    return True


def one_line_errors(record: Any) -> bool:
    """Log filter: a store error that MLflow logs (with SQL, parameters and a traceback, e.g. from
    its asynchronous logging thread) becomes one line; bench reports the failure itself, per variant."""
    record.msg, record.args = error_line(record.getMessage()), ()
    record.exc_info, record.exc_text, record.stack_info = None, None, None
    return True


def error_line(text: str) -> str:
    """The telling line of a database error's text (``(sqlite3.OperationalError) ...``), not
    SQLAlchemy's hints, the SQL it ran or its parameters (``[SQL: ...]``, ``[parameters: ...]``:
    a tag value that quotes an earlier error would otherwise be taken for this one)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    telling = [line for line in lines if ("Error)" in line or "Error:" in line) and not line.startswith("[")]
    return (telling[-1] if telling else lines[0] if lines else "")[:300]


# Where the default store's tables name artifact folders by absolute URI (MLflow resolves no
# relative artifact location).
ARTIFACT_COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                    ("logged_models", "artifact_location"))  # fmt: skip


def relocate_artifacts(uri: str) -> None:
    """Point an SQLite store's artifact locations at the ``mlartifacts/`` folder beside it, where
    ``artifact_root`` put them. MLflow records them as absolute URIs, so a results folder that was
    moved or copied would otherwise keep reading and writing the artifacts of the original folder
    (or recreate it). Resolved at every open: a moved folder works from its first command on."""
    import sqlite3

    db = sqlite_file(uri)
    if db is None:
        return
    here = (db.parent / "mlartifacts").resolve().as_uri()
    marker = "/mlartifacts/"
    con = sqlite3.connect(db, timeout=30)
    try:
        tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "experiments" not in tables:
            return
        roots = {
            loc[: loc.rindex(marker) + len(marker) - 1]
            for (loc,) in con.execute("SELECT artifact_location FROM experiments")
            if loc and loc.startswith("file://") and marker in loc
        }
        with con:  # one transaction: all locations move, or none
            for old in roots - {here}:
                for table, column in ARTIFACT_COLUMNS:
                    if table in tables:
                        con.execute(
                            f"UPDATE {table} SET {column} = ? || substr({column}, ?) "  # noqa: S608 - fixed names
                            f"WHERE substr({column}, 1, ?) = ?",
                            (here, len(old) + 1, len(old) + 1, old + "/"),
                        )
    finally:
        con.close()


def sqlite_file(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None


def artifact_root(uri: str, experiment: str) -> str | None:
    """Keep artifacts beside an SQLite store (not in the current directory)."""
    db = sqlite_file(uri)
    return None if db is None else (db.parent / "mlartifacts" / experiment).resolve().as_uri()


def ensure_experiment(client, uri: str, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_root(uri, name))
    except Exception:  # noqa: BLE001 - created concurrently by another worker
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def search_all(client, experiment_id: str, filter_string: str = "") -> list[Any]:
    """Every run of the experiment matching ``filter_string`` (all pages), newest first."""
    runs, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string=filter_string, max_results=1000,
            order_by=["attributes.start_time DESC"], page_token=token,
        )  # fmt: skip
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def param_items(flat: dict[str, Any]) -> list[Any]:
    from mlflow.entities import Param

    return [Param(k, redact_text(str(v))[:MAX_PARAM_CHARS]) for k, v in sorted(flat.items())]


def log_params(client, run_id: str, flat: dict[str, Any]) -> None:
    items = param_items(flat)
    for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
        client.log_batch(run_id, params=items[i : i + 100])


def log_metrics(
    client,
    run_id: str,
    metrics: dict[str, float],
    step: int = 0,
    not_before_ms: int = 0,
) -> None:
    """Synchronous (see ``EpochMetricsHook``). ``not_before_ms``: the earliest timestamp to log
    with (MLflow keeps, per key and step, the value with the latest timestamp as the run's metric)."""
    import math
    import time

    from mlflow.entities import Metric

    now = max(int(time.time() * 1000), not_before_ms)
    items = [
        Metric(k, float(v), now, step)
        for k, v in metrics.items()
        if v is not None and not math.isnan(float(v))
    ]
    for i in range(0, len(items), 1000):
        client.log_batch(run_id, metrics=items[i : i + 1000])


def log_text(client, run_id: str, text: str, name: str) -> None:
    client.log_text(run_id, redact_text(text), name)


def set_tags(client, run_id: str, tags: dict[str, str]) -> None:
    """Several tags in one call (one transaction on a database store: all or none)."""
    from mlflow.entities import RunTag

    client.log_batch(run_id, tags=[RunTag(k, redact_text(str(v))) for k, v in tags.items()])


def log_exception(client, run_id: str, exc: BaseException, name: str = "error.txt") -> None:
    text = redact_text("".join(traceback.format_exception(exc)))
    with contextlib.suppress(Exception):  # the failure itself is what matters; keep going
        client.log_text(run_id, text, name)
