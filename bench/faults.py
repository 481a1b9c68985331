"""Named fault points, so a test can stop or kill a real ``bench`` process exactly where it says
instead of racing it with sleeps and polling.

Arm with ``BENCH_FAULT=point:action[,point:action...]``; unarmed, ``fault_point`` is one dict
lookup (the variable is read once per process). Actions:

    kill   SIGKILL this process        term  SIGTERM this process     int  SIGINT this process
    exit   os._exit(99) (a crash that skips every handler)
    block  touch ``$BENCH_FAULT_RELEASE.reached.<pid>``, then wait until ``$BENCH_FAULT_RELEASE``
           exists (signals still arrive while it waits)
    log    append ``<point> <scope> <pid>`` to ``$BENCH_FAULT_LOG`` and go on (count how often a place ran)

With ``BENCH_FAULT_ONCE=PATH`` a fault fires only in the first process to reach it (the one that
creates PATH): a retried task, or the next variant, runs through (e.g. a Ray retry after a kill).

A point may be scoped to one variant: ``fault_point(name, scope)`` also fires ``name@scope``
(bench run passes the variant's ``variant_id``), so one variant of a matrix can be hit alone.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

ACTIONS = ("kill", "term", "int", "exit", "block", "log")
_armed: dict[str, str] | None = None


def _parse(spec: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        point, _, action = item.rpartition(":")
        if not point or action not in ACTIONS:
            raise ValueError(f"BENCH_FAULT: '{item}' is not point:action with action one of {ACTIONS}")
        out[point] = action
    return out


def armed(name: str) -> bool:
    global _armed
    if _armed is None:
        _armed = _parse(os.environ.get("BENCH_FAULT", ""))
    return name in _armed


def _first_to_fire() -> bool:
    once = os.environ.get("BENCH_FAULT_ONCE")
    if not once:
        return True
    try:
        os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def fault_point(name: str, scope: str = "") -> None:
    """Do what ``BENCH_FAULT`` says for ``name`` (and ``name@scope``); nothing when not armed."""
    for point in (name, f"{name}@{scope}") if scope else (name,):
        if armed(point) and (_armed[point] == "log" or _first_to_fire()):
            _act(point, _armed[point], scope)


def _act(name: str, action: str, scope: str) -> None:
    if action == "log":
        with open(os.environ["BENCH_FAULT_LOG"], "a") as fh:
            fh.write(f"{name} {scope or '-'} {os.getpid()}\n")
        return
    print(f"fault: {name}: {action} (pid {os.getpid()})", file=sys.stderr, flush=True)
    if action == "block":
        release = Path(os.environ["BENCH_FAULT_RELEASE"])
        Path(f"{release}.reached.{os.getpid()}").touch()
        while not release.exists():
            time.sleep(0.05)
    elif action == "exit":
        os._exit(99)
    else:
        sig = {"kill": signal.SIGKILL, "term": signal.SIGTERM, "int": signal.SIGINT}[action]
        os.kill(os.getpid(), sig)
        from bench.signals import deferring

        if not deferring():  # else held back by deferred_signals and acted on when that ends
            time.sleep(5)  # the signal is delivered at once; its handler runs here
