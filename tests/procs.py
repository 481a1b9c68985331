"""Processes a test starts and signals. SIGINT is set to its default in each: a suite started with
SIGINT ignored (from a script in the background: ``nohup pytest ... &``) would otherwise hand
that on, and ``bench``, like any program, keeps an inherited SIG_IGN, so a test's SIGINT would
do nothing. Each runs in a session of its own and its whole process group is killed after the
test, passed or failed (conftest.py), so a failing test leaves no ``bench`` behind."""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any

STARTED: list[subprocess.Popen] = []


def default_sigint() -> None:
    """``preexec_fn``: SIGINT at its default in the child, whatever the suite inherited."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def ignored_sigint() -> None:
    """``preexec_fn``: SIGINT ignored, as for a command a script started in the background."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def popen(args: list[str], ctrl_c_ignored: bool = False, **kwargs: Any) -> subprocess.Popen:
    """``subprocess.Popen`` in a new session with SIGINT at its default (or ignored); reaped after the test."""
    preexec = ignored_sigint if ctrl_c_ignored else default_sigint
    proc = subprocess.Popen(args, start_new_session=True, preexec_fn=preexec, **kwargs)
    STARTED.append(proc)
    return proc


def reap() -> None:
    """SIGKILL the process group of every process started by ``popen`` (driver, forkserver, children)."""
    while STARTED:
        proc = STARTED.pop()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass  # the group is gone already
        proc.wait(timeout=30)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
