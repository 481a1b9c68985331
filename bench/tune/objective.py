"""One trial's training, recorded as a nested MLflow run through ``run_recorded`` (the path
``bench run`` and ``bench verify-resume`` use too), with a hook that reports to the pruner and
computes the objective. It does not tell Optuna how the trial ended (the worker does), but it
makes sure Optuna hears what MLflow recorded: once a run is closed, Ctrl-C and SIGTERM are held
(``TrialContext.hold``) until Optuna has the trial's result, and a signal that lands while the
run is being closed is kept for then instead of discarding a result MLflow already has."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

from bench.engine.hooks import BaseHook, VariantResult

MLFLOW_ATTR = "bench.mlflow_run_id"
STATE = {"finished": "COMPLETE", "pruned": "PRUNED"}  # recorded status -> Optuna state (else FAIL)


class ObjectiveMissing(Exception):
    """The trial trained but never recorded the objective metric: it fails with that reason."""


@dataclass
class TrialContext:
    """What a worker holds while it runs trials (typed; built once per worker process)."""

    plan: Any  # bench.tune.plan.TunePlan
    client: Any  # MlflowClient
    experiment_id: str
    parent_run_id: str
    study: Any  # optuna.Study
    storage: Any  # the raw Optuna storage (heartbeats are recorded on it)
    worker_id: str
    current: int | None = None  # the trial this worker runs (retried if interrupted)
    pending: BaseException | None = None  # an interrupt that came after the run was closed
    held: contextlib.ExitStack | None = None
    outcome: Any = None  # the last trial's TrialOutcome, for the progress line

    def hold(self) -> None:
        """Hold Ctrl-C/SIGTERM back until ``release``: a closed run's result must reach Optuna."""
        from bench.util.signals import deferred_signals

        if self.held is None:
            self.held = contextlib.ExitStack()
            self.held.enter_context(deferred_signals())

    def release(self) -> None:
        """Let held signals through; an interrupt kept for after Optuna's tell is raised now."""
        held, self.held = self.held, None
        if held is not None:
            held.close()
        pending, self.pending = self.pending, None
        if pending is not None:
            raise pending


@dataclass
class TrialOutcome:
    number: int
    state: str  # COMPLETE | PRUNED | FAIL
    value: float | None
    params: dict[str, Any]
    epochs: int
    reason: str = ""
    test_acc: float | None = None


class PruneHook(BaseHook):
    """Records the objective metric after every epoch (``curve``: for the fidelity measurement),
    reports it and stops the trial when the pruner says so (with ``trial``; None: one seed of a
    multi-seed trial, or a re-check run, whose steps are not epochs); at the end computes the
    objective and adds it to the run's final metrics."""

    def __init__(self, trial: Any, objective: Any):
        self.trial, self.objective = trial, objective
        self.metric = objective.metric
        self.epochs = 0
        self.last: float | None = None  # the last value reported: a pruned trial's value
        self.value: float | None = None
        self.curve: list[float] = []

    def on_epoch_end(self, state: Any, epoch: int, record: dict[str, float]) -> None:
        import optuna

        self.epochs = epoch + 1
        value = record.get(self.metric)
        if value is None or not math.isfinite(value):
            return
        self.last = float(value)
        self.curve.append(self.last)
        if self.trial is None:
            return
        # step = epochs trained (1-based): a pruner's resource, so min_resource / n_warmup_steps e
        # mean "decide after epoch e" (0-based steps made hyperband's first rung wait an epoch more)
        self.trial.report(self.last, self.epochs)
        if self.epochs < state.cfg.train.epochs and self.trial.should_prune():  # the last epoch completes
            raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}: {self.metric}={value:.4f}")

    def on_end(self, state: Any, result: Any) -> None:
        obj = self.objective
        # the final value is the delivered model's (SWA's, EMA's averaged model) where a trick delivers one
        final = result.metrics.get(obj.metric)
        history = [*result.history, {obj.metric: final}] if final is not None else result.history
        values = [r[obj.metric] for r in history if obj.metric in r and math.isfinite(r[obj.metric])]
        best = max if obj.direction == "maximize" else min
        self.value = float(values[-1] if obj.reduce == "last" else best(values)) if values else None
        if self.value is None:
            recorded = sorted(k for k in (result.history[-1] if result.history else {}) if "/" in k)
            raise ObjectiveMissing(
                f"the objective metric {obj.metric} was not recorded; recorded: {', '.join(recorded)}"
            )
        result.metrics["objective"] = self.value

    def classify(self, exc: BaseException) -> Any:
        """How run_recorded records this trial's own ways of ending."""
        import optuna

        if isinstance(exc, optuna.TrialPruned):
            self.value = self.last
            metrics = {"objective": self.last} if self.last is not None else {}
            return VariantResult("pruned", reason=str(exc), metrics=metrics)
        if isinstance(exc, ObjectiveMissing):
            return VariantResult("failed", reason=str(exc))
        return None


def run_trial(ctx: TrialContext, trial: Any, params: dict[str, Any]) -> TrialOutcome:
    """Train trial ``trial`` with ``params`` on each tuning seed, each seed an MLflow child run;
    never raises for the trial's own failure (an interrupt closes the run as KILLED and propagates).
    One seed: the pruner sees epochs. Several: the pruner sees seed ``i``'s objective as step ``i``
    and may stop the trial between seeds; the objective is the mean over the seeds."""
    import numpy as np

    from bench.tune.fidelity import CURVE_ATTR

    seeds = ctx.plan.tuning_seeds
    multi = len(seeds) > 1
    values: list[float] = []
    curves: list[list[float]] = []
    tests: list[float] = []
    epochs = 0
    for i, seed in enumerate(seeds):
        hook = PruneHook(None if multi else trial, ctx.plan.tune.objective)
        result = _run_seed(ctx, trial, params, seed, hook, i if multi else None)
        epochs += hook.epochs
        state = STATE.get(result.status, "FAIL")
        if result.metrics.get("test/acc") is not None:
            tests.append(result.metrics["test/acc"])
        if state != "COMPLETE":
            reason = f"VariantSkipped: {result.reason}" if result.status == "skipped" else result.reason
            state = "FAIL" if multi else state  # a seed cannot be pruned on its own: only between seeds
            value = hook.value if state != "FAIL" else None
            test = tests[-1] if tests and not multi else None
            return TrialOutcome(trial.number, state, value, params, epochs, reason, test)
        values.append(float(hook.value))
        curves.append(hook.curve)
        n = min(map(len, curves))  # the mean curve over the seeds so far
        trial.set_user_attr(CURVE_ATTR, np.mean([c[:n] for c in curves], axis=0).tolist())
        if multi:
            trial.report(float(hook.value), i)
            if i < len(seeds) - 1 and trial.should_prune():
                mean = sum(values) / len(values)
                why = f"pruned after seed {i + 1} of {len(seeds)}: mean {ctx.plan.tune.objective.metric}={mean:.4f}"
                return TrialOutcome(trial.number, "PRUNED", mean, params, epochs, why, None)
    test = sum(tests) / len(tests) if len(tests) == len(seeds) else None
    return TrialOutcome(trial.number, "COMPLETE", sum(values) / len(values), params, epochs, "", test)


def record_trial(ctx: TrialContext, kind: str, number: int, values: dict[str, Any], seed: int, hook: PruneHook,
                 tags: dict[str, str], on_open: Any = None) -> Any:  # fmt: skip
    """Train trial ``number``'s values on ``seed`` as an MLflow child run of the study (``kind``:
    trial or recheck), through ``run_recorded`` as ``bench run`` does; its VariantResult."""
    from bench.execution.recorded import Recording, run_recorded

    plan = ctx.plan
    tags = {"bench.kind": kind, "bench.study": plan.study_name, "bench.trial_number": str(number),
            "bench.worker": ctx.worker_id, **tags}  # fmt: skip
    rec = Recording(
        ctx.client, ctx.experiment_id, plan.loaded.name, ctx.parent_run_id, tags, classify=hook.classify
    )
    variant = plan.trial_variant(values, number, seed)
    return run_recorded(rec, variant, hooks=(hook,), on_open=on_open)[1]


def _run_seed(ctx: TrialContext, trial: Any, params: dict[str, Any], seed: int, hook: PruneHook,
              index: int | None) -> Any:  # fmt: skip
    ctx.release()  # the previous seed's result is in: an interrupt held since then acts now
    retry_of = next((t.system_attrs.get("failed_trial") for t in ctx.study.get_trials(deepcopy=False)
                     if t.number == trial.number), None)  # fmt: skip
    tags = {} if index is None else {"bench.seed_index": str(index)}
    if retry_of is not None:
        tags["bench.retry_of"] = str(retry_of)
    opened_ids: list[str] = []

    def opened(run_id: str) -> None:
        opened_ids.append(run_id)
        trial.set_user_attr(MLFLOW_ATTR, run_id)

    try:
        result = record_trial(ctx, "trial", trial.number, params, seed, hook, tags, opened)
        ctx.hold()
    except KeyboardInterrupt as exc:
        result = closed_result(ctx.client, opened_ids[-1]) if opened_ids else None
        if result is None:
            raise  # interrupted while training: the run is KILLED and the trial is retried
        ctx.hold()
        ctx.pending = exc  # it came while the run was being closed: Optuna gets the result first
    return result


def closed_result(client: Any, run_id: str) -> Any:
    """What a closed run recorded (None while it runs, or when it was closed as interrupted)."""

    run = client.get_run(run_id)
    status = run.data.tags.get("bench.status", "")
    if run.info.status not in ("FINISHED", "FAILED") or status in ("", "running", "interrupted"):
        return None
    return VariantResult(status, reason=run.data.tags.get("bench.reason", ""), metrics=dict(run.data.metrics))
