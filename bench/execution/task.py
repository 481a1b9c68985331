"""One (variant, seed) task, run in a worker process (a local child process or a Ray worker):

    claim     under the recipe's claim lock: finished -> its row; leased by a live owner -> busy;
              gave up after too many crashes -> failed; else open (or reopen) the run with a lease
    train     run_recorded with the lease renewed by a heartbeat, resuming from the checkpoint
    row       the variant's row for runs.csv, as recorded

A claim is atomic (file lock + lease), so two processes, two shells or a retried Ray task never
train one (variant, seed) at the same time, and a finished one is never trained again.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.engine.hooks import VariantResult
from bench.fileio import atomic_copy, file_lock
from bench.recipe.load import Variant
from bench.results import recipe_dir
from bench.tracking import mlflow_store as store
from bench.tracking.lease import HEARTBEAT_TAG, Heartbeat, lease_alive
from bench.tracking.recorded import Recording, open_run, run_recorded
from bench.tracking.variant_runs import find_previous

CRASHES_TAG = "bench.crashes"
TOKEN_TAG = "bench.claim_token"  # which task (across its retries) holds the run


@dataclass(frozen=True)
class TaskSpec:
    """What every task of one ``bench run`` of one recipe shares (plain values: it travels to
    child processes and Ray workers)."""

    recipe: str
    results_dir: str
    tracking_uri: str
    experiment_id: str
    parent_id: str
    force: bool = False
    max_attempts: int = 3  # a variant whose process died this often is given up, with the reason

    @property
    def out_dir(self) -> Path:
        return recipe_dir(self.results_dir, self.recipe)

    def run_dir(self, variant: Variant) -> Path:
        return self.out_dir / "runs" / variant.run_key


def variant_row(
    variant: Variant, status: str, reason: str, metrics: dict[str, float], run_id: str
) -> dict[str, Any]:
    row: dict[str, Any] = {"variant": variant.name, "group": variant.group, "seed": variant.seed,
                           "status": status, "reason": reason}  # fmt: skip
    row.update(variant.axis_values)
    row.update(metrics)
    row.update({"variant_id": variant.variant_id, "run_key": variant.run_key, "mlflow_run_id": run_id})
    return row


def row_of_run(variant: Variant, run: Any, status: str | None = None) -> dict[str, Any]:
    tags = run.data.tags
    return variant_row(variant, status or tags.get("bench.status", "unknown"), tags.get("bench.reason", ""),
                       dict(run.data.metrics), run.info.run_id)  # fmt: skip


@dataclass
class Claim:
    run_id: str | None = None
    resume: bool = False
    row: dict[str, Any] | None = None  # set when this task is not to train (finished, busy, given up)


def claim(rec: Recording, spec: TaskSpec, variant: Variant, token: str | None = None) -> Claim:
    """Decide, under the claim lock, whether this task trains ``variant``; if so open its run.

    ``token`` names the task across retries (a Ray task's retry after its worker died): a run
    leased under the same token was this task's own earlier attempt, dead, so it is taken over at
    once and resumed (counted as a crash), instead of waiting for its lease to expire."""
    run_dir = spec.run_dir(variant)
    with file_lock(spec.out_dir / ".claims.lock"):
        previous = find_previous(rec.client, rec.experiment_id, variant.run_key)
        retried = bool(token) and previous is not None and previous.data.tags.get(TOKEN_TAG) == token
        crashes = int(previous.data.tags.get(CRASHES_TAG, "0") or 0) if previous is not None else 0
        if previous is not None and (retried or not spec.force):
            status = previous.data.tags.get("bench.status")
            if status == "finished":
                return Claim(row=row_of_run(variant, previous))
            if lease_alive(previous) and not retried:
                reason = f"being trained by another live process ({previous.data.tags.get('bench.host', '?')}); not touched"
                return Claim(row=variant_row(variant, "busy", reason, {}, previous.info.run_id))
            if crashes >= spec.max_attempts and not retried:
                reason = (
                    f"gave up after {crashes} crashed attempts: {previous.data.tags.get('bench.reason', '')}"
                )
                return Claim(row=variant_row(variant, "failed", reason[:480], {}, previous.info.run_id))
        if previous is not None and spec.force and not retried:
            previous = None  # --force: the user asked for a fresh run, checkpoints included
            shutil.rmtree(run_dir, ignore_errors=True)
        run_id = open_run(rec, variant, previous)
        if retried and previous.info.status == "RUNNING":  # its process died without closing it
            rec.client.set_tag(run_id, CRASHES_TAG, str(crashes + 1))
        if token:
            rec.client.set_tag(run_id, TOKEN_TAG, token)
        rec.client.set_tag(run_id, HEARTBEAT_TAG, f"{time.time():.3f}")  # leased from this moment
    return Claim(run_id=run_id, resume=previous is not None)


def export_weights(spec: TaskSpec, variant: Variant, result: VariantResult) -> None:
    """``weights/<variant>.pt`` and the statistics it expects, atomically, before the run is
    marked finished: a finished variant always has its weights."""
    if not result.weights_path:
        return
    from bench.recipe.matrix import safe_filename

    export = spec.out_dir / "weights" / f"{safe_filename(variant.name)}.pt"
    atomic_copy(Path(result.weights_path), export)
    sidecar = Path(result.weights_path + ".json")
    if sidecar.exists():
        atomic_copy(sidecar, Path(str(export) + ".json"))


def run_task(spec: TaskSpec, variant: Variant, progress: Any = None, client: Any = None, *,
             claim_token: str | None = None, run_tags: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    """Claim and train one variant; returns its row (never raises for the variant's own failure).
    ``claim_token``: see ``claim``; ``run_tags``: set on the run once claimed (e.g. the GPU used)."""
    client = client or store.open_store(spec.tracking_uri)
    rec = Recording(client, spec.experiment_id, spec.recipe, spec.parent_id)
    got = claim(rec, spec, variant, claim_token)
    if got.row is not None:
        return got.row
    for key, value in (run_tags or {}).items():
        client.set_tag(got.run_id, key, value)
    if got.resume and progress is not None:
        where = "its last checkpoint" if (spec.run_dir(variant) / "last.ckpt").exists() else "the start"
        progress.note(f"  resuming {variant.name} from {where} into MLflow run {got.run_id}")
    with Heartbeat(client, got.run_id):
        run_id, result = run_recorded(
            rec, variant, opened=(got.run_id, got.resume), run_dir=spec.run_dir(variant), progress=progress,
            export=lambda r: export_weights(spec, variant, r),
        )  # fmt: skip
    return variant_row(variant, result.status, result.reason, result.metrics, run_id)


def record_crash(
    spec: TaskSpec, variant: Variant, exitcode: int | None, client: Any = None, how: str | None = None
) -> dict[str, Any]:
    """The process training ``variant`` died without closing its run (OOM killer, segfault, CUDA
    fatal error): mark the run failed with why, count the crash, and return its row."""
    import signal

    client = client or store.open_store(spec.tracking_uri)
    run = find_previous(client, spec.experiment_id, variant.run_key)
    how = how or (
        f"signal {signal.Signals(-exitcode).name}"
        if exitcode is not None and exitcode < 0
        else f"exit {exitcode}"
    )
    if run is None:
        return variant_row(variant, "failed", f"its process died before recording ({how})", {}, "")
    crashes = int(run.data.tags.get(CRASHES_TAG, "0") or 0) + 1
    reason = (f"the variant's process died ({how}); attempt {crashes} of {spec.max_attempts}: the next run resumes it "
              "from its last checkpoint" if crashes < spec.max_attempts else
              f"the variant's process died ({how}) {crashes} times: given up")  # fmt: skip
    if run.info.status == "RUNNING":
        client.set_tag(run.info.run_id, CRASHES_TAG, str(crashes))
        client.set_tag(run.info.run_id, "bench.reason", reason)
        client.set_tag(run.info.run_id, "bench.status", "failed")
        client.set_terminated(run.info.run_id, "FAILED")
    return variant_row(variant, "failed", reason, dict(run.data.metrics), run.info.run_id)
