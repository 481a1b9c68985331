"""One MLflow child run per variant: its tags, finding it again by ``run_key``, closing the runs
a killed ``bench run`` left RUNNING, logging each (metric, epoch) exactly once across a kill
and resume, and MLflow's system metrics (CPU, memory, disk, network; GPU utilisation, memory and
power via pynvml) as its ``system/...`` metrics while it trains: ``tracking.system_metrics``, on
by default where a CUDA device trains."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from typing import Any

from bench.recipe.load import Variant
from bench.tracking import mlflow_store as store


def variant_tags(variant: Variant, recipe: str) -> dict[str, str]:
    tags = {
        store.PARENT_TAG: "",
        "bench.recipe": recipe,
        "bench.variant": variant.name,
        "bench.group": variant.group,
        "bench.variant_id": variant.variant_id,
        "bench.run_key": variant.run_key,
        "bench.seed": str(variant.seed),
        "bench.init_seed": str(variant.init_stream),
        "bench.data_seed": str(variant.data_stream),
        "mlflow.runName": variant.name,
    }
    for label, value in variant.axis_values.items():
        tags[f"axis.{label}"] = value
    return tags


def find_previous(client, experiment_id: str, run_key: str):
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`bench.run_key` = '{run_key}'",
        order_by=["attributes.start_time DESC"],
    )
    return runs[0] if runs else None


HOST = socket.gethostname()


def owner_tags() -> dict[str, str]:
    """Which process and host run a run: for people, and for telling which run a dead variant
    process had opened (task.record_crash); ownership is the recipe's lock (execution/owner.py)."""
    return {"bench.pid": str(os.getpid()), "bench.host": HOST}


RUN_KINDS = (None, "recipe")  # ``bench run``'s child runs (no kind) and parent runs; not tune's


def close_dead_runs(client, experiment_id: str, recipe: str) -> list[str]:
    """Close the runs of ``recipe`` a killed ``bench run`` left RUNNING. Called by the recipe's
    owner before it dispatches anything, so every such run is dead: no lease to wait for. Runs of
    ``bench tune`` (their own kinds, guarded by Optuna's heartbeats) are not touched."""
    closed = []
    query = f"attributes.status = 'RUNNING' and tags.`bench.recipe` = '{recipe}'"
    for run in store.search_all(client, experiment_id, query):
        if run.data.tags.get("bench.kind") not in RUN_KINDS:
            continue
        run_id = run.info.run_id
        if run.data.tags.get("bench.kind") != "recipe":
            reason = "the bench run training it was killed (SIGKILL, OOM killer, reboot); resumable"
            store.set_tags(client, run_id, {"bench.status": "interrupted", "bench.reason": reason})
        client.set_terminated(run_id, "KILLED")
        closed.append(run_id)
    return closed


class EpochNotRecorded(Exception):
    """The tracking store failed to record an epoch's metrics (the store's error is the cause)."""


class EpochMetricsHook:
    """Logs each epoch's record as metrics at ``step=epoch``, one batch per epoch, exactly once
    per (key, step) even across a kill and resume; also remembers the state so a failure can be
    reported with its epoch.

    Synchronous: MLflow's asynchronous queue saved one small request per epoch but cost every run
    up to 1 s at its end (its logging thread sees the stop only after a 1 s wait on the empty
    queue), and ``mlflow.flush_async_logging()`` flushed the process's default store
    (``./mlflow.db``, created in the current folder), not the run's.

    On resume it knows what the killed process already logged (skipped when training replays those
    epochs) and re-logs what the checkpoint's history has but the store lacks (a new store after
    the old one was lost), so the metric history has neither gaps nor duplicates. A store error is
    raised as ``EpochNotRecorded``: the store failed, not the variant.
    """

    def __init__(self, client, run_id: str, resume: bool):
        self.client, self.run_id = client, run_id
        self.state: Any = None
        self.logged: dict[str, set[int]] = {}
        if resume:
            for key in client.get_run(run_id).data.metrics:
                self.logged[key] = {m.step for m in client.get_metric_history(run_id, key)}

    def on_start(self, state: Any) -> None:
        self.state = state
        for record in state.history:  # epochs restored from a checkpoint: fill what MLflow lost
            self.on_epoch_end(state, int(record["epoch"]), record)

    def on_epoch_end(self, state: Any, epoch: int, record: dict[str, float]) -> None:
        fresh = {k: v for k, v in record.items() if k != "epoch" and epoch not in self.logged.get(k, ())}
        if fresh:
            try:
                store.log_metrics(self.client, self.run_id, fresh, step=epoch)
            except Exception as exc:  # noqa: BLE001 - mlflow raises many types for a failing store
                raise EpochNotRecorded(exc) from exc
            for key in fresh:
                self.logged.setdefault(key, set()).add(epoch)

    def on_end(self, state: Any, result: Any) -> None:
        pass  # every epoch was logged as it ended


@contextlib.contextmanager
def system_metrics(client: Any, run_id: str, variant: Any, *, resume: bool) -> Iterator[None]:
    setting = variant.body.tracking.system_metrics
    if setting is None:  # the default: where a CUDA device trains
        import torch

        setting = variant.body.train.device != "cpu" and torch.cuda.is_available()
    if not setting:
        yield
        return
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    uri = client._tracking_client.tracking_uri  # the run's own store, not the process default
    monitor = SystemMetricsMonitor(run_id, sampling_interval=10.0, resume_logging=resume, tracking_uri=uri)
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()
