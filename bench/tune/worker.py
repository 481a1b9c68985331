"""A worker: Optuna's own loop (``study.optimize``) runs the trials, with its heartbeat thread and
its sweep of stale trials (``fail_stale_trials``, then ``RetryHeartbeatStaleTrialCallback``) before each
``ask``. bench adds the stop rule (``full``: the study holds ``n_trials``, retried trials not
counted), the claim mark (liveness.py), and the interrupt rule: a trial interrupted while it
trains is failed and queued again with the same parameters, so its retry takes its place."""

from __future__ import annotations

import time
from typing import Any

from bench.errors import described, message_line
from bench.tune import liveness
from bench.tune.fidelity import CHOICE_ATTR, PILOT_ATTR
from bench.tune.liveness import EPOCHS_ATTR, active, finished_count
from bench.tune.objective import TrialContext, TrialOutcome, run_trial
from bench.tune.plan import say
from bench.tune.prepare import reseed_for_trial
from bench.tune.space import Space
from bench.util.signals import ignore_stop_signals


class TrialFailed(Exception):
    """The trial's own failure (diverged, an error): Optuna records FAIL and the loop goes on."""


def full(ctx: TrialContext) -> bool:
    """The study holds ``n_trials`` (finished, running or queued; a retry replaces its original)
    and none is waiting. Workers that check at the same instant may each ask for one more; all
    but the first stand down unrun (``liveness.is_surplus``)."""
    trials = active(ctx.study.get_trials(deepcopy=False))
    waiting = any(t.state.name == "WAITING" for t in trials)
    return not waiting and len(trials) >= ctx.plan.tune.n_trials


def draw(ctx: TrialContext, trial: Any) -> dict[str, Any]:
    """The trial's parameters, from a sampler seeded by its number (bench/tune/prepare.py)."""
    reseed_for_trial(ctx.study, ctx.plan, trial.number)
    return ctx.plan.space.suggest(trial)


def objective(ctx: TrialContext, trial: Any) -> float:
    """Optuna's objective: claim, train, record; COMPLETE returns the value, PRUNED and FAIL raise."""
    import optuna

    ctx.current = trial.number
    if liveness.is_surplus(ctx.study.get_trials(deepcopy=False), trial.number, ctx.plan.tune.n_trials):
        tid = liveness.trial_id(ctx.storage, ctx.plan.study_name, trial.number)
        ctx.storage.set_trial_system_attr(tid, liveness.SURPLUS_ATTR, True)
        raise TrialFailed("surplus: the study already holds n_trials")
    liveness.claim(ctx.storage, ctx.plan.study_name, trial, ctx.worker_id)
    try:
        if _auto_decision(ctx):
            trial.set_user_attr(PILOT_ATTR, True)
        try:
            params = draw(ctx, trial)
        except ValueError as exc:  # a retried trial with values outside this recipe's space
            outcome = TrialOutcome(trial.number, "FAIL", None, {}, 0, f"parameters: {exc}")
        else:
            outcome = run_trial(ctx, trial, params)
    except KeyboardInterrupt:
        trial.set_user_attr(liveness.REASON_ATTR, "interrupted")
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. the tracking store failed: this trial fails
        outcome = TrialOutcome(trial.number, "FAIL", None, {}, 0, described(exc, 480))
    ctx.hold()  # from here until Optuna has the result (released in ``after``)
    ctx.outcome = outcome
    trial.set_user_attr(EPOCHS_ATTR, outcome.epochs)
    if outcome.test_acc is not None:
        trial.set_user_attr("test_acc", float(outcome.test_acc))
    trial.set_user_attr(liveness.REASON_ATTR, outcome.reason)  # a retry's inherited reason goes
    if outcome.state == "PRUNED":
        raise optuna.TrialPruned(outcome.reason)
    if outcome.state != "COMPLETE":
        raise TrialFailed(outcome.reason)
    return outcome.value


def _auto_decision(ctx: TrialContext) -> bool:
    """Under ``tune.pruner: auto``, decide the pruner once the pilot is done; True while it is not
    (this trial is a pilot: never pruned). Workers deciding at once write the same choice."""
    from bench.tune.pruners import AutoPruner

    pruner = ctx.study.pruner
    if not isinstance(pruner, AutoPruner):
        return False
    note = pruner.decide(ctx.study, ctx.plan.epochs)
    if note:
        say(note)
    return CHOICE_ATTR not in ctx.study.user_attrs


def worker_loop(ctx: TrialContext, index: int) -> None:
    """Run trials until the study is full (or this command's timeout passes)."""
    plan = ctx.plan

    def after(study: Any, frozen: Any) -> None:
        ctx.current = None
        report(ctx, frozen, index)
        ctx.release()  # an interrupt that came after the run was closed acts now
        for note in liveness.sweep(study, ctx.storage, plan.tune.liveness.grace_period):
            say(f"note: {note}")
        if full(ctx):
            study.stop()

    started = time.monotonic()
    try:
        while not full(ctx):
            left = plan.tune.timeout - (time.monotonic() - started) if plan.tune.timeout else None
            if left is not None and left <= 0:
                say(f"worker {index}: timeout of {plan.tune.timeout:.0f}s reached; re-run to continue")
                break
            try:
                ctx.study.optimize(lambda t: objective(ctx, t), callbacks=[after], catch=(TrialFailed,),
                                   timeout=left, gc_after_trial=False)  # fmt: skip
            except ValueError as exc:  # Optuna's tell: another worker declared the trial dead
                if "Cannot tell" not in str(exc) or ctx.current is None:
                    raise
                ctx.release()
                say(f"trial {ctx.current}: declared dead by another worker (no heartbeat within the "
                    "grace period); its retry runs it, this result is discarded")  # fmt: skip
                ctx.current = None
    except BaseException as exc:
        # Not only KeyboardInterrupt: a signal that lands inside Optuna's own bookkeeping of the
        # first one surfaces as Optuna's error (UnboundLocalError in ``_run_trial``), and the
        # trial must be queued again all the same, not left RUNNING until the heartbeat sweep.
        ignore_stop_signals()  # a second Ctrl-C or SIGTERM must not cut the re-queueing short
        interrupt = _interrupt_in(exc)
        frozen = next((t for t in ctx.study.get_trials(deepcopy=False) if t.number == ctx.current), None)
        if frozen is not None and frozen.state.name in ("RUNNING", "FAIL"):  # not one Optuna has told done
            reason = "interrupted" if interrupt else f"worker error: {message_line(exc)}"
            liveness.retry(ctx.study, ctx.storage, frozen, reason, max_retry=None)
        if interrupt is not None and interrupt is not exc:
            raise interrupt from None  # the command stops as interrupted (130 / 143), not failed
        raise
    finally:
        held, ctx.held = ctx.held, None
        if held is not None:  # an error inside Optuna's tell: give Ctrl-C back its handler
            held.close()


def _interrupt_in(exc: BaseException | None) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM that ``exc`` is, or was raised while handling; None if none."""
    while exc is not None and not isinstance(exc, KeyboardInterrupt):
        exc = exc.__context__
    return exc


def report(ctx: TrialContext, frozen: Any, index: int) -> None:
    plan, outcome = ctx.plan, ctx.outcome
    if frozen.system_attrs.get(liveness.SURPLUS_ATTR):
        who = f"worker {index}: " if plan.options.workers > 1 else ""
        say(f"{who}not run: trial {frozen.number} came after the study's last free slot was taken")
        return
    done = finished_count(ctx.study.get_trials(deepcopy=False))
    value = frozen.value if frozen.value is not None else (outcome.value if outcome else None)
    shown = f"{plan.tune.objective.metric}={value:.4f}" if value is not None else "no value"
    reason = frozen.user_attrs.get(liveness.REASON_ATTR, "")
    epochs = frozen.user_attrs.get(EPOCHS_ATTR, 0)
    pruned = reason if plan.tune.seeds_per_trial > 1 else f"pruned after {epochs} epoch(s)"
    state = frozen.state.name
    label = {"COMPLETE": "complete", "PRUNED": pruned, "FAIL": "FAILED"}.get(state, state)
    extra = f" ({reason})" if state == "FAIL" and reason else ""
    who = f"[w{index}] " if plan.options.workers > 1 else ""
    params = Space.describe(outcome.params) if outcome and outcome.number == frozen.number else ""
    left = max(plan.tune.n_trials - done, 0)
    say(
        f"{who}trial {frozen.number} {params}: {label}, {shown}{extra} [{done}/{plan.tune.n_trials} done, {left} left]"
    )
