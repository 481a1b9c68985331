"""A worker: claim a trial under the study lock, run it while its lease beats, tell Optuna how it
ended; repeat until the study holds ``n_trials`` (or this command's timeout passes). Everything
after a claim sits inside the error handling: a trial ends COMPLETE, PRUNED, FAIL with a reason,
or, when this process is interrupted, re-queued so that its retry takes its place."""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

from bench.faults import fault_point
from bench.tune import liveness
from bench.tune.fidelity import CHOICE_ATTR, PILOT_ATTR
from bench.tune.locks import StudyLock
from bench.tune.objective import TrialContext, TrialOutcome, run_trial
from bench.tune.plan import say
from bench.tune.space import Space
from bench.tune.trials import EPOCHS_ATTR, active, by_number, finished_count


def _stop_signals() -> None:
    """Once stopping, a second Ctrl-C or SIGTERM must not cut the re-queueing short."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


@dataclass
class Claim:
    trial: Any  # optuna.Trial
    lease: liveness.Lease


def claim(ctx: TrialContext, lock: StudyLock) -> Claim | None:
    """Atomically: sweep dead trials, count, ask for the next trial and record its first heartbeat."""
    from optuna.trial import TrialState

    plan, study, storage = ctx.plan, ctx.study, ctx.storage
    liv = plan.tune.liveness
    with lock():
        for note in liveness.sweep(study, storage, ctx.storage_kind, liv.grace_period):
            say(f"note: {note}")
        trials = active(study.get_trials(deepcopy=False))
        waiting = any(t.state == TrialState.WAITING for t in trials)
        if not waiting and len(trials) >= plan.tune.n_trials:
            return None
        pilot = _auto_decision(ctx)
        trial = study.ask()
        fault_point("tune.asked")
        try:
            if pilot:
                trial.set_user_attr(PILOT_ATTR, True)
            tid = liveness.trial_id(storage, plan.study_name, trial.number)
            lease = liveness.Lease(storage, ctx.storage_kind, tid, liv.heartbeat_interval)
            lease.beat()
            trial.set_user_attr(liveness.WORKER_ATTR, ctx.worker_id)
            storage.set_trial_system_attr(tid, liveness.CLAIM_ATTR, trial.number)
        except KeyboardInterrupt:
            _stop_signals()
            frozen = by_number(study.get_trials(deepcopy=False), trial.number)
            liveness.requeue(study, storage, frozen, "interrupted while claiming", max_retry=None)
            raise
        except Exception:
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            raise
    fault_point("tune.claimed")
    return Claim(trial, lease)


def _auto_decision(ctx: TrialContext) -> bool:
    """Under ``tune.pruner: auto``, decide the pruner once the pilot is done; True while it is not
    (the next trial is a pilot: never pruned)."""
    from bench.tune.pruners import AutoPruner

    pruner = ctx.study.pruner
    if not isinstance(pruner, AutoPruner):
        return False
    note = pruner.decide(ctx.study, ctx.plan.epochs)
    if note:
        say(note)
    return CHOICE_ATTR not in ctx.study.user_attrs


def run_claimed(ctx: TrialContext, claimed: Claim) -> TrialOutcome:
    """Run a claimed trial and tell Optuna its end; an interrupt re-queues it and propagates."""
    import optuna
    from optuna.trial import TrialState

    trial, number = claimed.trial, claimed.trial.number
    try:
        with claimed.lease:
            fault_point("tune.trial_leased")
            try:
                params = ctx.plan.space.suggest(trial)
            except ValueError as exc:  # a re-queued trial with values outside this recipe's space
                outcome = TrialOutcome(number, "FAIL", None, {}, 0, f"parameters: {exc}")
            else:
                outcome = run_trial(ctx, trial, params)
    except (KeyboardInterrupt, SystemExit):
        _stop_signals()
        frozen = by_number(ctx.study.get_trials(deepcopy=False), number)
        liveness.requeue(ctx.study, ctx.storage, frozen, "interrupted", max_retry=None)
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. the tracking store failed: this trial fails
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        outcome = TrialOutcome(number, "FAIL", None, {}, 0, f"{type(exc).__name__}: {first}"[:500])
    frozen = by_number(ctx.study.get_trials(deepcopy=False), number)
    if claimed.lease.lost or frozen.state.is_finished():
        outcome.reason = (
            "declared dead by another worker (no heartbeat within the grace period); its retry runs it"
        )
        outcome.state = "LOST"
        return outcome
    trial.set_user_attr(EPOCHS_ATTR, outcome.epochs)
    if outcome.test_acc is not None:
        trial.set_user_attr("test_acc", float(outcome.test_acc))
    if outcome.reason:
        trial.set_user_attr(liveness.REASON_ATTR, outcome.reason)
    try:
        if outcome.state == "COMPLETE":
            ctx.study.tell(trial, outcome.value)
        else:
            ctx.study.tell(trial, state=TrialState[outcome.state], skip_if_finished=True)
    except optuna.exceptions.UpdateFinishedTrialError:
        outcome.state = "LOST"
    return outcome


def worker_loop(ctx: TrialContext, index: int) -> int:
    """Claim and run trials until the study is full; returns how many this worker ran."""
    plan = ctx.plan
    lock = StudyLock(ctx.spec, plan.study_name, plan.out_dir, plan.tune.liveness.lock_timeout)
    started = time.monotonic()
    ran = 0
    while True:
        if plan.tune.timeout and time.monotonic() - started > plan.tune.timeout:
            say(f"worker {index}: timeout of {plan.tune.timeout:.0f}s reached; re-run to continue")
            break
        claimed = claim(ctx, lock)
        if claimed is None:
            break
        outcome = run_claimed(ctx, claimed)
        ran += 1
        report(ctx, outcome, index)
    return ran


def report(ctx: TrialContext, outcome: TrialOutcome, index: int) -> None:
    plan = ctx.plan
    done = finished_count(ctx.study.get_trials(deepcopy=False))
    left = max(plan.tune.n_trials - done, 0)
    value = f"{plan.tune.objective.metric}={outcome.value:.4f}" if outcome.value is not None else "no value"
    pruned = outcome.reason if plan.tune.seeds_per_trial > 1 else f"pruned after {outcome.epochs} epoch(s)"
    state = {"COMPLETE": "complete", "PRUNED": pruned, "FAIL": "FAILED",
             "LOST": "result discarded"}[outcome.state]  # fmt: skip
    extra = f" ({outcome.reason})" if outcome.state in ("FAIL", "LOST") and outcome.reason else ""
    who = f"[w{index}] " if plan.options.workers > 1 else ""
    say(
        f"{who}trial {outcome.number} {Space.describe(outcome.params)}: {state}, {value}{extra} "
        f"[{done}/{plan.tune.n_trials} done, {left} left]"
    )
