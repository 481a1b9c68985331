"""Is the worker running a trial still alive? Recorded in the study's storage, so every command,
results folder and machine sharing the storage gives the same answer.

* RDB storages: Optuna's heartbeat (``record_heartbeat``), ``fail_stale_trials`` and the storage's
  ``RetryHeartbeatStaleTrialCallback``.
* Journal: Optuna has no heartbeat for it, so ``Lease`` writes the time into the trial's system
  attribute ``bench.heartbeat``; ``sweep`` fails a trial whose last beat is older than the grace
  period and re-queues it with Optuna's ``RetryHeartbeatStaleTrialCallback``.
* Both: the first heartbeat is recorded inside the claim, and a claim ends by writing the trial's
  own number into ``bench.claimed``. Claims happen under the study lock, so a sweeper holding it
  knows that a RUNNING trial without that mark was asked for by a worker that died mid-claim
  (Optuna's sweep alone would leave it RUNNING forever: it has no heartbeat row).
"""

from __future__ import annotations

import threading
import time
import warnings
from typing import Any

from bench.tune.storage import STALE_RETRIES
from bench.tune.trials import superseded

CLAIM_ATTR = "bench.claimed"
BEAT_ATTR = "bench.heartbeat"
WORKER_ATTR = "bench.worker"
REASON_ATTR = "bench.fail_reason"


def trial_id(storage: Any, study_name: str, number: int) -> int:
    """The storage's id of trial ``number`` (public storage API; ``Trial`` does not expose it)."""
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study_name), number)


class Lease:
    """One claimed trial's heartbeat: ``beat()`` once at the claim, then a thread while it runs."""

    def __init__(self, storage: Any, kind: str, tid: int, interval: float):
        self.storage, self.kind, self.tid, self.interval = storage, kind, tid, interval
        self.lost = False  # another worker declared this trial dead (we were silent too long)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="bench-heartbeat")

    def beat(self) -> None:
        if self.kind == "rdb":
            self.storage.record_heartbeat(self.tid)
        else:
            self.storage.set_trial_system_attr(self.tid, BEAT_ATTR, time.time())

    def _run(self) -> None:
        from optuna.exceptions import UpdateFinishedTrialError

        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except UpdateFinishedTrialError:
                self.lost = True
                return
            except Exception:  # noqa: BLE001 - a missed beat is retried; the grace period covers it
                pass

    def __enter__(self) -> Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def requeue(study: Any, storage: Any, frozen: Any, reason: str, max_retry: int | None) -> bool:
    """Fail a RUNNING trial that will not finish and queue a retry with the same parameters
    (its retry takes its place in the count). The retry is queued first: a kill in between
    leaves a RUNNING trial already superseded, which the next sweep only fails. True if queued."""
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    history = frozen.system_attrs.get("retry_history", [])
    queued = frozen.number not in superseded(study.get_trials(deepcopy=False)) and (
        max_retry is None or len(history) < max_retry
    )
    if queued:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "experimental" since Optuna 2.8
            RetryHeartbeatStaleTrialCallback(max_retry=None)(study, frozen)
    tid = trial_id(storage, study.study_name, frozen.number)
    try:
        storage.set_trial_user_attr(tid, REASON_ATTR, reason)
        storage.set_trial_state_values(tid, TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        pass  # someone finished it meanwhile
    return queued


def sweep(study: Any, storage: Any, kind: str, grace: float) -> list[str]:
    """Fail trials whose worker is gone and re-queue each (at most ``STALE_RETRIES`` times).
    Call it holding the study lock. Returns one note per swept trial."""
    import optuna
    from optuna.trial import TrialState

    notes: list[str] = []
    if kind == "rdb":
        before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        optuna.storages.fail_stale_trials(study)  # Optuna's heartbeat sweep + retry callback
        after = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        notes += [
            f"trial {n}: its worker stopped sending heartbeats; failed and re-queued"
            for n in sorted(before - after)
        ]
    now = time.time()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.system_attrs.get(CLAIM_ATTR) != t.number:
            why = "its worker died while claiming it"
        elif kind == "journal" and now - t.system_attrs.get(BEAT_ATTR, 0.0) > grace:
            why = f"no heartbeat for {now - t.system_attrs.get(BEAT_ATTR, 0.0):.0f}s (worker {t.user_attrs.get(WORKER_ATTR, '?')} is gone)"
        else:
            continue
        queued = requeue(study, storage, t, f"stale: {why}", STALE_RETRIES)
        notes.append(
            f"trial {t.number}: {why}; failed"
            + (", re-queued with the same parameters" if queued else " (not re-queued)")
        )
    return notes
