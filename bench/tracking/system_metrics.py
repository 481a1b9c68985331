"""MLflow's system metrics (CPU, memory, disk, network, and GPU utilisation, memory and power via
pynvml) for one child run, while its variant trains: ``tracking.system_metrics``, on by default
where a CUDA device trains. Logged as ``system/...`` metrics of the variant's own run."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


def wanted(variant: Any) -> bool:
    setting = variant.body.tracking.system_metrics
    if setting is not None:
        return bool(setting)
    import torch

    return variant.body.train.device != "cpu" and torch.cuda.is_available()


@contextlib.contextmanager
def system_metrics(
    client: Any, run_id: str, variant: Any, *, resume: bool, interval: float = 10.0
) -> Iterator[None]:
    if not wanted(variant):
        yield
        return
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    uri = client._tracking_client.tracking_uri  # the run's own store, not the process default
    monitor = SystemMetricsMonitor(
        run_id, sampling_interval=interval, resume_logging=resume, tracking_uri=uri
    )
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()
