"""Who owns a RUNNING run: a lease, not a hostname and pid.

The process training a variant renews ``bench.heartbeat`` (unix seconds) on its run every
``interval`` seconds. A RUNNING run whose heartbeat is older than ``timeout`` belongs to nobody
(its process was killed, its container came back under another hostname, its machine died), and
the next ``bench run`` takes it over and resumes it from its checkpoint, on any host.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

HEARTBEAT_TAG = "bench.heartbeat"


def timeout_s() -> float:
    return float(os.environ.get("BENCH_LEASE_TIMEOUT", "90"))


def interval_s() -> float:
    return float(os.environ.get("BENCH_LEASE_INTERVAL", str(max(0.2, timeout_s() / 6))))


def lease_alive(run: Any, now: float | None = None) -> bool:
    """True when ``run`` is RUNNING and its owner renewed the lease recently."""
    if run.info.status != "RUNNING":
        return False
    beat = run.data.tags.get(HEARTBEAT_TAG, "")
    try:
        last = float(beat)
    except ValueError:
        return False
    return (now if now is not None else time.time()) - last < timeout_s()


class Heartbeat:
    """Renews the lease of ``run_id`` in a daemon thread while the ``with`` block runs."""

    def __init__(self, client: Any, run_id: str):
        self.client, self.run_id = client, run_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-heartbeat", daemon=True)

    def beat(self) -> None:
        self.client.set_tag(self.run_id, HEARTBEAT_TAG, f"{time.time():.3f}")

    def _run(self) -> None:
        while not self._stop.wait(interval_s()):
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - a missed beat is retried; the timeout covers several
                pass

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
