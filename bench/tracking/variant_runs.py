"""One MLflow child run per variant: its tags, finding it again by ``run_key``, telling a live
run from one a killed process left RUNNING, and logging each (metric, epoch) exactly once
across a kill and resume."""

from __future__ import annotations

import os
import socket
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
    """Which process and host run a run: information for people; ownership is the lease."""
    return {"bench.pid": str(os.getpid()), "bench.host": HOST}


def close_stale_runs(client, experiment_id: str) -> list[str]:
    """Close the runs a killed ``bench run`` left RUNNING: those whose lease expired. Runs that
    carry no lease (``bench tune`` trials, which Optuna's heartbeat guards) are not touched."""
    from bench.tracking.lease import HEARTBEAT_TAG, lease_alive

    closed = []
    for run in store.search_all(client, experiment_id, "attributes.status = 'RUNNING'"):
        if HEARTBEAT_TAG not in run.data.tags or lease_alive(run):
            continue
        run_id = run.info.run_id
        if run.data.tags.get("bench.kind") != "recipe":
            client.set_tag(run_id, "bench.status", "interrupted")
            client.set_tag(
                run_id,
                "bench.reason",
                "the process running it stopped renewing its lease (killed); resumable",
            )
        client.set_terminated(run_id, "KILLED")
        closed.append(run_id)
    return closed


class MetricLog:
    """Logs metrics at ``step=epoch`` exactly once per (key, step), even across a kill and resume.

    On resume it knows what the killed process already logged (skipped when training replays those
    epochs) and re-logs what the checkpoint's history has but MLflow lost (asynchronous logging that
    never landed), so the metric history has neither gaps nor duplicates.
    """

    def __init__(self, client, run_id: str, resume: bool):
        self.client, self.run_id = client, run_id
        self.logged: dict[str, set[int]] = {}
        if resume:
            for key in client.get_run(run_id).data.metrics:
                self.logged[key] = {m.step for m in client.get_metric_history(run_id, key)}

    def log(self, metrics: dict[str, float], step: int, synchronous: bool = False) -> None:
        fresh = {k: v for k, v in metrics.items() if step not in self.logged.get(k, ())}
        if fresh:
            store.log_metrics(self.client, self.run_id, fresh, step=step, synchronous=synchronous)
            for key in fresh:
                self.logged.setdefault(key, set()).add(step)


class EpochMetricsHook(store.MlflowEpochHook):
    """The per-epoch MLflow hook, resume-aware (see ``MetricLog``); also remembers the state so a
    failure can be reported with its epoch."""

    def __init__(self, client, run_id: str, log: MetricLog):
        super().__init__(client, run_id)
        self.metric_log = log
        self.state: Any = None

    def on_start(self, state: Any) -> None:
        self.state = state
        for record in state.history:  # epochs restored from a checkpoint: fill what MLflow lost
            self.on_epoch_end(state, int(record["epoch"]), record)

    def on_epoch_end(self, state: Any, epoch: int, record: dict[str, float]) -> None:
        self.metric_log.log({k: v for k, v in record.items() if k != "epoch"}, step=epoch)
