"""SIGTERM as an exception, and bookkeeping that a signal cannot cut in half.

``Terminated`` is a KeyboardInterrupt, so nothing catching ``Exception`` swallows it and every
path that closes a run as interrupted on Ctrl-C does the same on SIGTERM (exit 143 instead of
130). ``deferred_signals`` holds SIGINT/SIGTERM back while a run's final state is written, so a
signal arriving then is acted on right after, with statuses that tell the truth.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from bench.errors import Terminated

DEFERRED = {signal.SIGINT, signal.SIGTERM}


def _on_sigterm(signum, frame):  # noqa: ARG001
    raise Terminated("terminated by SIGTERM")


def install_sigterm():
    """Raise ``Terminated`` on SIGTERM in the main thread; returns the previous handler."""
    return signal.signal(signal.SIGTERM, _on_sigterm)


def ignore_stop_signals() -> None:
    """Ignore SIGINT/SIGTERM from now on (main thread only): once stopping, later ones (a
    terminal's Ctrl-C and the driver's forwarded one) must not cut the bookkeeping short."""
    if threading.current_thread() is threading.main_thread():
        for sig in DEFERRED:
            signal.signal(sig, signal.SIG_IGN)


def _first_only(signum, frame):  # noqa: ARG001
    ignore_stop_signals()
    raise Terminated("terminated by SIGTERM") if signum == signal.SIGTERM else KeyboardInterrupt()


def install_first_only() -> None:
    """In a variant's child or a tune worker: the first SIGINT or SIGTERM interrupts, the rest are
    ignored. A SIGINT inherited as ignored stays ignored: started in the background from a script,
    the command ignores the script's Ctrl-C, which reaches every process of its group (README)."""
    for sig in DEFERRED:
        if not (sig == signal.SIGINT and signal.getsignal(sig) == signal.SIG_IGN):
            signal.signal(sig, _first_only)


_deferring = False


def deferring() -> bool:
    """True while ``deferred_signals`` holds signals back in this process."""
    return _deferring


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back for the ``with`` block, then act on the first that came.

    A signal mask would not do: it covers one thread, and a process-directed signal is taken by
    any thread that does not block it (MLflow's logging threads), after which
    Python runs the handler in the main thread anyway. So the handlers are swapped for one
    that only remembers, and the remembered signal is raised again once the block is done."""
    global _deferring
    if threading.current_thread() is not threading.main_thread() or _deferring:
        yield
        return
    old = {sig: signal.getsignal(sig) for sig in DEFERRED}
    pending: list[int] = []
    for sig in DEFERRED:
        if old[sig] is not None:  # None: a handler not installed from Python; leave it alone
            signal.signal(sig, lambda signum, frame: pending.append(signum))  # noqa: ARG005
    _deferring = True
    try:
        yield
    finally:
        _deferring = False
        for sig, handler in old.items():
            if handler is not None:
                signal.signal(sig, handler)
        if pending:
            signal.raise_signal(pending[0])  # the real handler acts on it now


def closing_status(exc: BaseException) -> str:
    """The MLflow status of a parent run that ``exc`` ended: KILLED for Ctrl-C/SIGTERM, else FAILED."""
    return "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
