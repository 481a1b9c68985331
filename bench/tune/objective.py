"""One trial: suggest parameters, train the variant with a pruning hook, record it in Optuna
(COMPLETE / PRUNED / FAIL with a reason) and as a nested MLflow run, and print a line."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

from bench.engine.hooks import BaseHook
from bench.tracking import mlflow_store as store
from bench.tune.storage import MLFLOW_ATTR, REASON_ATTR

STATUS = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}


class PruneHook(BaseHook):
    """Reports the objective metric after every epoch and stops the trial when the pruner says so."""

    def __init__(self, trial: Any, metric: str):
        self.trial, self.metric = trial, metric
        self.epochs = 0

    def on_epoch_end(self, state: Any, epoch: int, record: dict[str, float]) -> None:
        import optuna

        self.epochs = epoch + 1
        value = record.get(self.metric)
        if value is None or not math.isfinite(value):
            return
        self.trial.report(float(value), epoch)
        if self.epochs < state.cfg.train.epochs and self.trial.should_prune():  # the last epoch completes
            raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}: {self.metric}={value:.4f}")


class Heartbeat:
    """Optuna's heartbeat for an RDB storage while one ask/tell trial runs."""

    def __init__(self, storage: Any, trial_id: int, interval: float):
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception:  # noqa: BLE001 - a missed beat is retried; the grace period covers it
                pass
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> Heartbeat:
        if hasattr(self.storage, "record_heartbeat") and self.storage.get_heartbeat_interval() is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


@dataclass
class TrialOutcome:
    number: int
    state: str  # COMPLETE | PRUNED | FAIL
    value: float | None
    params: dict[str, Any]
    epochs: int
    reason: str = ""
    test_acc: float | None = None


def objective_value(
    history: list[dict[str, float]], metric: str, reduce: str, direction: str
) -> float | None:
    values = [r[metric] for r in history if metric in r and math.isfinite(r[metric])]
    if not values:
        return None
    if reduce == "last":
        return float(values[-1])
    return float(max(values) if direction == "maximize" else min(values))


def run_trial(ctx: Any, trial: Any) -> TrialOutcome:
    """Run one claimed trial to its end; never raises for a trial's own failure."""
    import optuna
    from optuna.trial import TrialState

    from bench.engine.errors import Diverged, VariantSkipped
    from bench.engine.loop import run_variant
    from bench.recipe.dotted import flatten

    plan, client = ctx.plan, ctx.client
    number = trial.number
    params = plan.space.suggest(trial)
    retry_of = ctx.storage.get_trial(trial._trial_id).system_attrs.get("failed_trial")
    tags = {
        store.PARENT_TAG: ctx.parent_run_id,
        "mlflow.runName": f"trial {number}",
        "bench.kind": "trial",
        "bench.study": plan.study_name,
        "bench.recipe": plan.recipe_name,
        "bench.trial_number": str(number),
        "bench.status": "running",
        "bench.worker": ctx.worker_id,
    }
    if retry_of is not None:
        tags["bench.retry_of"] = str(retry_of)
    run_id = client.create_run(ctx.experiment_id, run_name=f"trial {number}", tags=tags).info.run_id
    trial.set_user_attr(MLFLOW_ATTR, run_id)
    hook = PruneHook(trial, plan.tune.objective.metric)
    state, value, reason, history, test_acc = "FAIL", None, "", [], None
    try:
        with Heartbeat(ctx.storage, trial._trial_id, ctx.heartbeat_interval):
            variant = plan.trial_variant(params, number)
            store.log_params(client, run_id, {**flatten(variant.config), "seed": variant.seed})
            result = run_variant(variant, hooks=[store.MlflowEpochHook(client, run_id), hook])
        history = result.history
        test_acc = result.metrics.get("test/acc")
        obj = plan.tune.objective
        value = objective_value(history, obj.metric, obj.reduce, obj.direction)
        if value is None:
            recorded = ", ".join(sorted(k for k in (history[-1] if history else {}) if "/" in k))
            reason = f"the objective metric {obj.metric} was not recorded; recorded: {recorded}"
        else:
            state = "COMPLETE"
        store.log_metrics(client, run_id, result.metrics, step=max(len(history) - 1, 0))
    except optuna.TrialPruned as exc:
        state, reason = "PRUNED", str(exc)
    except (VariantSkipped, Diverged) as exc:
        reason = f"{type(exc).__name__}: {exc}"
    except (KeyboardInterrupt, SystemExit):
        store.flush()
        _close(client, run_id, "failed", "interrupted", "KILLED")
        trial.set_user_attr(REASON_ATTR, "interrupted")
        ctx.study.tell(trial, state=TrialState.FAIL)
        raise
    except Exception as exc:  # noqa: BLE001 - one broken trial must not stop the study
        store.log_exception(client, run_id, exc)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        reason = f"{type(exc).__name__}: {first}"[:500]
        if "out of memory" in reason.lower():
            reason = "out of memory: " + reason
    store.flush()
    if state == "PRUNED":
        history_values = trial_intermediate(ctx, trial)
        value = history_values[-1] if history_values else None
    if test_acc is not None:
        trial.set_user_attr("test_acc", float(test_acc))
    if reason:
        trial.set_user_attr(REASON_ATTR, reason)
    if state == "COMPLETE":
        ctx.study.tell(trial, value)
    else:
        ctx.study.tell(trial, state=TrialState[state])
    if value is not None:
        store.log_metrics(client, run_id, {"objective": value})
    _close(client, run_id, STATUS[state], reason, "FAILED" if state == "FAIL" else "FINISHED")
    return TrialOutcome(number, state, value, params, hook.epochs, reason, test_acc)


def trial_intermediate(ctx: Any, trial: Any) -> list[float]:
    frozen = ctx.storage.get_trial(trial._trial_id)
    return [frozen.intermediate_values[k] for k in sorted(frozen.intermediate_values)]


def _close(client: Any, run_id: str, status: str, reason: str, mlflow_status: str) -> None:
    client.set_tag(run_id, "bench.status", status)
    client.set_tag(run_id, "bench.reason", reason)
    client.set_terminated(run_id, mlflow_status)
