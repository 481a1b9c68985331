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


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, DEFERRED)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)  # a pending signal is delivered here
