"""The project's own error types: one base class so the CLI can turn any of them into a clean
message and a non-zero exit code, without a traceback."""

from __future__ import annotations


def message_line(exc: BaseException, limit: int | None = 300) -> str:
    """An exception's first line (libraries put tracebacks or SQL in messages), else its type's name."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


def described(exc: BaseException, limit: int | None = 300) -> str:
    """``Type: first line`` of an exception (the type alone when it has no message)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:limit]}" if text else type(exc).__name__


class BenchError(Exception):
    """A user-facing error: the message says what is wrong and what is allowed."""

    exit_code = 1


class RecipeError(BenchError):
    """A recipe (or override, overlay, search space) is invalid. Nothing has run yet."""

    exit_code = 2

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None):
        self.source = source
        self.key = key
        self.detail = message
        where = ": ".join(part for part in (source, key) if part)
        super().__init__(f"{where}: {message}" if where else message)


class DataError(BenchError):
    """A data set could not be found or read."""

    exit_code = 2


class CheckpointError(BenchError):
    """A checkpoint or weights file is missing, corrupt, unsafe or for another model."""

    exit_code = 2


class DiskFullError(BenchError):
    """A write failed for lack of space (ENOSPC, or torch's ``unexpected pos`` that hides it)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so the current variant is closed as KILLED. A
    KeyboardInterrupt, so that nothing catching ``Exception`` swallows it."""


class TrackingError(BenchError):
    """The MLflow (or Optuna) store cannot be reached or created."""

    exit_code = 3


class FolderVanished(BenchError):
    """The results folder (or the SQLite store) was deleted or moved while ``bench run`` ran: the
    command stops before the next variant rather than failing each one (exit 3, as a lost store).
    ``store_gone``: the SQLite store went too (by default it lives in the results folder)."""

    exit_code = 3

    def __init__(self, message: str, *, store_gone: bool):
        self.store_gone = store_gone
        super().__init__(message)


class StoreChoiceError(TrackingError):
    """The tracking URI names a kind of store bench cannot record in: bad input, nothing recorded."""

    exit_code = 2


class ClusterError(BenchError):
    """Ray is missing, its cluster cannot be reached, or it cannot reach the stores (``--executor ray``)."""

    exit_code = 2
