"""One trial's training, recorded as a nested MLflow run: ``run_trial`` creates the child run,
logs parameters, trains the variant with a pruning hook, maps exceptions to reasons and closes the
run with its status. It does not touch Optuna's state: the worker tells Optuna how the trial ended
(this is the part a shared ``run_recorded`` of bench run / tune / verify-resume can replace)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bench.engine.hooks import BaseHook
from bench.faults import fault_point
from bench.tracking import mlflow_store as store

MLFLOW_ATTR = "bench.mlflow_run_id"
STATUS = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}


@dataclass
class TrialContext:
    """What a worker holds while it runs trials (typed; built once per worker process)."""

    plan: Any  # bench.tune.plan.TunePlan
    spec: Any  # bench.tune.storage.StorageSpec
    client: Any  # MlflowClient
    experiment_id: str
    parent_run_id: str
    study: Any  # optuna.Study
    storage: Any  # the raw Optuna storage (heartbeats are recorded on it)
    worker_id: str

    @property
    def storage_kind(self) -> str:
        return self.spec.kind


@dataclass
class TrialOutcome:
    number: int
    state: str  # COMPLETE | PRUNED | FAIL | LOST (another worker declared it dead meanwhile)
    value: float | None
    params: dict[str, Any]
    epochs: int
    reason: str = ""
    test_acc: float | None = None


class PruneHook(BaseHook):
    """Reports the objective metric after every epoch and stops the trial when the pruner says so."""

    def __init__(self, trial: Any, metric: str):
        self.trial, self.metric = trial, metric
        self.epochs = 0
        self.last: float | None = None  # the last value reported: a pruned trial's value

    def on_epoch_end(self, state: Any, epoch: int, record: dict[str, float]) -> None:
        import optuna

        self.epochs = epoch + 1
        value = record.get(self.metric)
        if value is None or not math.isfinite(value):
            return
        self.trial.report(float(value), epoch)
        self.last = float(value)
        if self.epochs < state.cfg.train.epochs and self.trial.should_prune():  # the last epoch completes
            raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}: {self.metric}={value:.4f}")


def objective_value(
    history: list[dict[str, float]], metric: str, reduce: str, direction: str
) -> float | None:
    values = [r[metric] for r in history if metric in r and math.isfinite(r[metric])]
    if not values:
        return None
    if reduce == "last":
        return float(values[-1])
    return float(max(values) if direction == "maximize" else min(values))


def run_trial(ctx: TrialContext, trial: Any, params: dict[str, Any]) -> TrialOutcome:
    """Train trial ``trial`` with ``params`` as an MLflow child run; never raises for the trial's
    own failure (an interrupt closes the run as KILLED and propagates)."""
    import optuna

    from bench.engine.errors import Diverged, VariantSkipped
    from bench.engine.loop import run_variant
    from bench.recipe.dotted import flatten

    plan, client, number = ctx.plan, ctx.client, trial.number
    retry_of = next((t.system_attrs.get("failed_trial") for t in ctx.study.get_trials(deepcopy=False)
                     if t.number == number), None)  # fmt: skip
    tags = {
        store.PARENT_TAG: ctx.parent_run_id, "mlflow.runName": f"trial {number}", "bench.kind": "trial",
        "bench.study": plan.study_name, "bench.recipe": plan.recipe_name, "bench.trial_number": str(number),
        "bench.status": "running", "bench.worker": ctx.worker_id,
    }  # fmt: skip
    if retry_of is not None:
        tags["bench.retry_of"] = str(retry_of)
    run_id = client.create_run(ctx.experiment_id, run_name=f"trial {number}", tags=tags).info.run_id
    trial.set_user_attr(MLFLOW_ATTR, run_id)
    fault_point("tune.trial_run_opened")
    hook = PruneHook(trial, plan.tune.objective.metric)
    state, value, reason, test_acc = "FAIL", None, "", None
    try:
        variant = plan.trial_variant(params, number)
        store.log_params(client, run_id, {**flatten(variant.config), "seed": variant.seed})
        result = run_variant(variant, hooks=[store.MlflowEpochHook(client, run_id), hook])
        test_acc = result.metrics.get("test/acc")
        obj = plan.tune.objective
        value = objective_value(result.history, obj.metric, obj.reduce, obj.direction)
        if value is None:
            recorded = ", ".join(
                sorted(k for k in (result.history[-1] if result.history else {}) if "/" in k)
            )
            reason = f"the objective metric {obj.metric} was not recorded; recorded: {recorded}"
        else:
            state = "COMPLETE"
        store.log_metrics(client, run_id, result.metrics, step=max(len(result.history) - 1, 0))
    except optuna.TrialPruned as exc:
        state, reason, value = "PRUNED", str(exc), hook.last
    except (VariantSkipped, Diverged) as exc:
        reason = f"{type(exc).__name__}: {exc}"
    except (KeyboardInterrupt, SystemExit):
        store.flush()
        _close(client, run_id, "interrupted", "interrupted; the trial is re-queued", "KILLED")
        raise
    except Exception as exc:  # noqa: BLE001 - one broken trial must not stop the study
        store.log_exception(client, run_id, exc)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        reason = f"{type(exc).__name__}: {first}"[:500]
        if "out of memory" in reason.lower():
            reason = "out of memory: " + reason
    store.flush()
    if value is not None:
        store.log_metrics(client, run_id, {"objective": value})
    _close(client, run_id, STATUS[state], reason, "FAILED" if state == "FAIL" else "FINISHED")
    return TrialOutcome(number, state, value, params, hook.epochs, reason, test_acc)


def _close(client: Any, run_id: str, status: str, reason: str, mlflow_status: str) -> None:
    client.set_tag(run_id, "bench.status", status)
    client.set_tag(run_id, "bench.reason", reason)
    client.set_terminated(run_id, mlflow_status)
