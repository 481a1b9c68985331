"""Named fault points, so a test can stop or kill a real ``bench`` process exactly where it says
instead of racing it with sleeps and polling.

Arm with ``BENCH_FAULT=point:action[,point:action...]``; unarmed, ``fault_point`` is one dict
lookup (the variable is read once per process). Actions:

    kill   SIGKILL this process        term  SIGTERM this process     int  SIGINT this process
    exit   os._exit(99) (a crash that skips every handler)
    block  touch ``$BENCH_FAULT_RELEASE.reached.<pid>``, then wait until ``$BENCH_FAULT_RELEASE``
           exists (signals still arrive while it waits)

With ``BENCH_FAULT_ONCE=PATH`` a fault fires only in the first process to reach it (the one that
creates PATH): a retried task, or the next variant, runs through (e.g. a Ray retry after a kill).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

ACTIONS = ("kill", "term", "int", "exit", "block")
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


def fault_point(name: str) -> None:
    """Do what ``BENCH_FAULT`` says for ``name``; nothing when it is not armed."""
    if not armed(name) or not _first_to_fire():
        return
    action = _armed[name]
    print(f"fault: {name}: {action} (pid {os.getpid()})", file=sys.stderr, flush=True)
    if action == "block":
        release = Path(os.environ["BENCH_FAULT_RELEASE"])
        Path(f"{release}.reached.{os.getpid()}").touch()
        while not release.exists():
            time.sleep(0.05)
    elif action == "exit":
        os._exit(99)
    else:
        os.kill(os.getpid(), {"kill": signal.SIGKILL, "term": signal.SIGTERM, "int": signal.SIGINT}[action])
        time.sleep(5)  # the signal is delivered at once; its handler runs here
