"""The one recorded-run path: ``bench run``, ``bench tune`` and ``bench verify-resume`` all train a
variant through ``run_recorded``, so a child run is opened (or reopened to resume), described,
trained, classified (finished | skipped | failed | interrupted | the caller's own, e.g. pruned)
and closed the same way everywhere.

Every (re)opening of a run is an attempt (tag ``bench.attempt``). Tags that describe one attempt
(``bench.failed_epoch``, ``bench.error``) are removed when the run is reopened, so a run that
failed once and then finished does not carry the old failure; the earlier attempts'
``errors/attempt-<n>.txt`` stay as history (MLflow cannot delete an artifact in every store).

It lives in execution, not tracking: it trains (the engine) and defers signals around the close,
while bench/tracking stays the MLflow adapter that neither needs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.engine.errors import Diverged, VariantSkipped
from bench.engine.hooks import BaseHook, VariantResult
from bench.errors import described
from bench.recipe.dotted import flatten
from bench.recipe.load import Variant
from bench.tracking import mlflow_store as store
from bench.tracking.variant_runs import (
    EpochMetricsHook,
    EpochNotRecorded,
    owner_tags,
    system_metrics,
    variant_tags,
)
from bench.util.signals import deferred_signals

MLFLOW_STATUS = {"finished": "FINISHED", "skipped": "FINISHED", "pruned": "FINISHED", "interrupted": "KILLED"}
# Tags that describe one attempt: cleared when a run is reopened, so a later success does not
# carry an earlier failure's epoch or error.
ATTEMPT_TAGS = ("bench.failed_epoch", "bench.error")
ATTEMPT_TAG = "bench.attempt"


@dataclass
class Recording:
    """Where and how a variant is recorded."""

    client: Any
    experiment_id: str
    recipe: str
    parent_id: str = ""
    tags: dict[str, str] = field(default_factory=dict)  # extra tags for a new run (e.g. bench.kind)
    # Maps an exception a caller expects (e.g. optuna.TrialPruned) to its result; None: not one.
    classify: Callable[[BaseException], VariantResult | None] | None = None


def open_run(rec: Recording, variant: Variant, previous: Any = None) -> str:
    """A new child run for ``variant``, or ``previous`` reopened (RUNNING again, same run id)."""
    client = rec.client
    live = {store.PARENT_TAG: rec.parent_id, "bench.status": "running", "bench.reason": "", **owner_tags()}
    if previous is None:
        tags = {**variant_tags(variant, rec.recipe), **rec.tags, **live, ATTEMPT_TAG: "1"}
        run_id = client.create_run(rec.experiment_id, run_name=variant.name, tags=tags).info.run_id
    else:
        run_id = previous.info.run_id
        client.update_run(run_id, status="RUNNING")
        attempt = int(previous.data.tags.get(ATTEMPT_TAG, "1") or 1) + 1
        store.set_tags(client, run_id, {**live, **rec.tags, ATTEMPT_TAG: str(attempt)})
        for key in set(ATTEMPT_TAGS) & set(previous.data.tags):
            client.delete_tag(run_id, key)
    describe(client, run_id, variant, previous)
    return run_id


def describe(client: Any, run_id: str, variant: Variant, previous: Any = None) -> None:
    """The run's params and ``config.yaml``. A reopened run (``previous``) gets what it lacks: a
    kill between ``create_run`` and these calls must not leave it undescribed for good."""
    params = {**flatten(variant.config), "seed": variant.seed}
    have = previous.data.params if previous is not None else {}
    missing = {k: v for k, v in params.items() if k not in have}
    if missing:
        store.log_params(client, run_id, missing)
    if previous is None or not any(f.path == "config.yaml" for f in client.list_artifacts(run_id)):
        store.log_text(client, run_id, yaml.safe_dump(variant.config, sort_keys=False), "config.yaml")


def train(rec: Recording, run_id: str, variant: Variant, *, resume: bool, run_dir: Path | None,
          hooks: tuple = (), progress: Any = None) -> VariantResult:  # fmt: skip
    """run_variant inside the run; every outcome but an interrupt or a store error becomes a
    VariantResult."""
    from bench.engine.loop import run_variant

    client = rec.client
    epoch_hook = EpochMetricsHook(client, run_id, resume=resume)
    try:
        with system_metrics(client, run_id, variant, resume=resume):
            return run_variant(variant, hooks=[epoch_hook, SummaryHook(client, run_id), *hooks],
                               run_dir=run_dir, progress=progress)  # fmt: skip
    except VariantSkipped as exc:
        return VariantResult("skipped", reason=str(exc))
    except EpochNotRecorded as exc:  # the store's failure, reported as one by the caller, not the variant's
        raise exc.__cause__ from None
    except Diverged as exc:
        client.set_tag(run_id, "bench.failed_epoch", str(exc.epoch))
        return VariantResult("failed", reason=f"diverged: {exc}")
    except Exception as exc:  # noqa: BLE001 - one broken variant must not stop the matrix
        mapped = rec.classify(exc) if rec.classify else None
        if mapped is not None:
            return mapped
        name = f"errors/attempt-{client.get_run(run_id).data.tags.get(ATTEMPT_TAG, '1')}.txt"
        store.log_exception(client, run_id, exc, name=name)  # the traceback, named by bench.error
        client.set_tag(run_id, "bench.error", name)
        where = ""
        if epoch_hook.state is not None:
            client.set_tag(run_id, "bench.failed_epoch", str(epoch_hook.state.epoch))
            where = f" (in epoch {epoch_hook.state.epoch})"
        return VariantResult("failed", reason=described(exc, 460)[:480] + where)


def close_run(
    rec: Recording, run_id: str, result: VariantResult, export: Callable | None = None
) -> VariantResult:
    """Final metrics, then the export, then the status: a kill in between leaves a run that is
    not yet ``finished`` (and resumes), never a finished one without its weights. Returns the
    result as recorded. (Each step is a function of its own: tests stop a process between them.)"""
    log_final_metrics(rec.client, run_id, result)
    result = export_result(result, export)
    tag_outcome(rec.client, run_id, result)
    rec.client.set_terminated(run_id, MLFLOW_STATUS.get(result.status, "FAILED"))
    return result


def log_final_metrics(client: Any, run_id: str, result: VariantResult) -> None:
    """The final metrics, logged synchronously. A final metric a killed earlier close already
    logged is not logged twice."""
    if result.metrics:
        last = result.history[-1] if result.history else {}
        logged = client.get_run(run_id).data.metrics
        # each final metric once, even when a kill makes a rerun close again (its time/* differ);
        # a key the last epoch logged again only where the final value replaces it (a delivered *acc)
        final = {
            k: v for k, v in result.metrics.items()
            if (k not in last and k not in logged) or (k in last and last[k] != v and logged.get(k) != v)
        }  # fmt: skip
        # A delivered model's ``*/acc`` replaces the last epoch's (raw weights') value at the same
        # step: it must be later than that one, or MLflow could keep the raw value as the latest.
        after = max((m.timestamp for k in final if k in last for m in client.get_metric_history(run_id, k)),
                    default=0)  # fmt: skip
        store.log_metrics(
            client, run_id, final, step=max(len(result.history) - 1, 0), not_before_ms=after + 1
        )


def export_result(result: VariantResult, export: Callable | None) -> VariantResult:
    """A finished result exported; a failed export makes it ``failed`` (the checkpoint stays: the
    next run resumes and exports again)."""
    if export is None or result.status != "finished":
        return result
    try:
        export(result)
    except Exception as exc:  # noqa: BLE001 - a full disk or a folder in the way: this variant fails
        reason = f"cannot export the weights: {described(exc)}; the next run resumes and exports again"
        return dataclasses.replace(result, status="failed", reason=reason)
    return result


def tag_outcome(client: Any, run_id: str, result: VariantResult) -> None:
    """The status tags, set before MLflow's terminal status."""
    closing = {"bench.reason": result.reason[:5000], "bench.status": result.status}
    if result.status == "finished":
        closing["bench.delivered"] = result.delivered  # which model ``*/acc`` scores (and the export)
    store.set_tags(client, run_id, closing)


class SummaryHook(BaseHook):
    """Records what a run is made of once it is built: parameter counts, param groups, the model,
    the backend flags its tricks set and the input normalisation it uses (tags, so the report can
    show and compare them)."""

    def __init__(self, client, run_id: str):
        self.client, self.run_id = client, run_id

    def on_start(self, state: Any) -> None:
        from bench.components.models import count_parameters

        trainable, total = count_parameters(state.model)
        groups = "\n".join(f"{g.get('name')}: lr={g['lr']:.3g} wd={g['weight_decay']:.3g} params={sum(p.numel() for p in g['params'])}"
                           for g in state.optimizer.param_groups)  # fmt: skip
        text = f"trainable params: {trainable}\ntotal params: {total}\n\nparam groups:\n{groups}\n\n{state.model}\n"
        store.log_text(self.client, self.run_id, text, "model_summary.txt")
        mean, std = state.input_stats
        tags = {f"bench.{k}": v for t in (state.precision, *state.tricks) for k, v in t.params().items()}
        tags["bench.normalize"] = (
            f"{state.normalize} mean={[round(m, 4) for m in mean]} std={[round(s, 4) for s in std]}"
        )
        tags["bench.device"] = str(state.device)
        from bench.measure.provenance import collect

        tags.update(collect(state.device))  # after the tricks set their backend flags
        store.set_tags(self.client, self.run_id, tags)  # one transaction, not one (and an fsync) per tag

    def on_end(self, state: Any, result: Any) -> None:
        """Whether the run's speed is contaminated by other processes (bench/engine/contention.py),
        as a tag too, so runs can be filtered on it."""
        from bench.engine.contention import CONTAMINATED

        if CONTAMINATED in result.metrics:
            self.client.set_tag(
                self.run_id, "bench.speed_contaminated", str(bool(result.metrics[CONTAMINATED])).lower()
            )


def run_recorded(rec: Recording, variant: Variant, *, previous: Any = None, run_dir: Path | None = None,
                 hooks: tuple = (), progress: Any = None, export: Callable | None = None,
                 opened: tuple[str, bool] | None = None,
                 on_open: Callable[[str], None] | None = None) -> tuple[str, VariantResult]:  # fmt: skip
    """Train ``variant`` as one recorded child run; returns (run id, result). ``opened`` is a run
    the caller already opened (claimed) and whether it resumes. An interrupt (Ctrl-C, SIGTERM)
    closes the run as interrupted (KILLED) and is raised again."""
    run_id, resume = (
        opened if opened is not None else (open_run(rec, variant, previous), previous is not None)
    )
    if on_open is not None:
        on_open(run_id)
    try:
        result = train(rec, run_id, variant, resume=resume, run_dir=run_dir, hooks=hooks, progress=progress)
    except KeyboardInterrupt as exc:
        reason = f"{type(exc).__name__}: interrupted; the next run resumes from the last checkpoint"
        with deferred_signals():  # a second signal waits until the run's status is written
            close_run(rec, run_id, VariantResult("interrupted", reason=reason))
        raise
    with deferred_signals():
        result = close_run(rec, run_id, result, export)
    return run_id, result
