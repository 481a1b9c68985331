"""One (variant, seed) task, run in a worker process (a local child or a Ray worker): claim it
(finished -> its row; died ``max_attempts`` times -> given up; else open or reopen its run), train
it through ``run_recorded`` and return its runs.csv row.

No lock and no lease: the command dispatching the task owns the recipe (owner.py) and dispatches
each (variant, seed) once, so a RUNNING run found here is a dead attempt's (a Ray retry) and is
resumed at once. Each death of a variant's process is recorded by the owner as the artifact
``errors/crash-<attempt>.txt``; those are what gives up. An error of the tracking store or of the
export fails this variant with a clear reason; it never stops the matrix.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.execution.recorded import ATTEMPT_TAG, Recording, open_run, run_recorded
from bench.execution.results import recipe_dir
from bench.measure.hardware import granted_cores
from bench.recipe.load import Variant
from bench.tracking import mlflow_store as store
from bench.tracking.uris import redact_text
from bench.tracking.variant_runs import find_previous
from bench.util.fileio import atomic_copy, atomic_write_text

CRASH_PREFIX = "errors/crash-"  # errors/crash-<attempt>.txt: how the process of that attempt died


def set_torch_threads(workers: int = 1, cores: int | None = None) -> int:
    """Set this worker's torch intra-op threads to ``cores // workers`` (default: the granted
    cores), at least 1, or ``OMP_NUM_THREADS`` where the user set fewer; returns the count set.
    Why: torch starts one thread per core it sees, and workers doing that on the same cores
    oversubscribe them (the throughput measured is the scheduler's, not the variant's). The run
    records the count as the tag ``env.torch_threads`` (provenance.py)."""
    import torch

    count = max(1, (cores or granted_cores()) // max(workers, 1))
    requested = os.environ.get("OMP_NUM_THREADS", "").strip()
    if requested.isdigit() and int(requested) > 0:
        count = min(count, int(requested))
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count


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
    # run_key -> tags naming the content of the variant's inputs (weights file, data); see identity.py
    inputs: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def out_dir(self) -> Path:
        return recipe_dir(self.results_dir, self.recipe)

    def run_dir(self, variant: Variant) -> Path:
        return self.out_dir / "runs" / variant.run_key

    def export_path(self, variant: Variant) -> Path:
        from bench.recipe.matrix import safe_filename

        return self.out_dir / "weights" / f"{safe_filename(variant.name)}.pt"


def variant_row(
    variant: Variant, status: str, reason: str, metrics: dict[str, float], run_id: str, **extra: Any
) -> dict[str, Any]:
    """``extra``: e.g. store_error, for the exit code, not a column of runs.csv."""
    return {"variant": variant.name, "group": variant.group, "seed": variant.seed, "status": status,
            "reason": redact_text(reason), **variant.axis_values, **metrics, "variant_id": variant.variant_id,
            "run_key": variant.run_key, "mlflow_run_id": run_id, **extra}  # fmt: skip


def row_of_run(variant: Variant, run: Any) -> dict[str, Any]:
    tags = run.data.tags
    extra = {"delivered": tags["bench.delivered"]} if "bench.delivered" in tags else {}
    return variant_row(variant, tags.get("bench.status", "unknown"), tags.get("bench.reason", ""),
                       dict(run.data.metrics), run.info.run_id, **extra)  # fmt: skip


def first_line(exc: BaseException) -> str:
    text = store.error_line(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def store_failure(variant: Variant, what: str, exc: BaseException, spec: TaskSpec, run_id: str = "") -> dict:
    """The row of a variant whose recording failed (an MLflow error, "database is locked", a
    damaged store): failed with what was being done and why; the matrix goes on."""
    # said only where it is true: a results folder deleted mid-run took the checkpoint with it
    resumes = (spec.run_dir(variant) / "last.ckpt").is_file()
    reason = (f"the tracking store failed while {what}: {first_line(exc)} ({spec.tracking_uri}); "
              + ("the checkpoint is kept and the next run resumes it" if resumes else
                 f"no checkpoint in {spec.run_dir(variant)}: the next run trains it from the start"))  # fmt: skip
    return variant_row(variant, "failed", reason, {}, run_id, store_error=True)


def is_final(run: Any, spec: TaskSpec, variant: Variant) -> bool | str:
    """Finished for good: the tag, MLflow's status and the exported weights agree. A run killed
    between its status tag and its terminal status, or whose weights are gone, is resumed.
    ``"reexported"`` when the label's file held another run key's weights and now holds its own."""
    if run.data.tags.get("bench.status") != "finished" or run.info.status != "FINISHED":
        return False
    export, own = spec.export_path(variant), spec.run_dir(variant) / "model.pt"
    if export.is_file() and exported_run_key(export) == variant.run_key:
        return True
    if not (export.is_file() and own.is_file()):
        return False
    try:
        export_model(spec, variant, own)
    except OSError:  # the resume exports again, and fails the variant with the reason if it cannot
        return False
    return "reexported"


def exported_run_key(export: Path) -> str | None:
    """The run key whose weights ``export`` holds, as its sidecar says; None when there is no
    sidecar or no key in it (an export cut short, or one from before keys were recorded)."""
    try:
        key = json.loads(Path(f"{export}.json").read_text()).get("run_key")
    except (OSError, ValueError, AttributeError):
        return None
    return key if isinstance(key, str) else None


def crashes(client: Any, run: Any) -> int:
    """How many times the owner recorded that ``run``'s process died (``record_crash``)."""
    return sum(a.path.startswith(CRASH_PREFIX) for a in client.list_artifacts(run.info.run_id, "errors"))


def claim(
    rec: Recording, spec: TaskSpec, variant: Variant, progress: Any
) -> dict[str, Any] | tuple[str, bool]:
    """Decide whether this task trains ``variant``: its row when not (finished, given up), else
    its run opened (or reopened) and whether it resumes."""
    run_dir = spec.run_dir(variant)
    previous = find_previous(rec.client, rec.experiment_id, variant.run_key)
    # This command's own run (a Ray retry whose worker died): --force asked for a fresh run once.
    own = previous is not None and previous.data.tags.get(store.PARENT_TAG) == spec.parent_id
    if previous is not None and (own or not spec.force):
        if final := is_final(previous, spec, variant):
            if progress is not None:
                again = (
                    f"; its weights exported again to {spec.export_path(variant)}"
                    if final == "reexported"
                    else ""
                )
                progress.note(f"  {variant.name}: already finished, skipped{again}")
            return row_of_run(variant, previous)
        if (
            not own
            and previous.info.status == "FAILED"
            and (n := crashes(rec.client, previous)) >= spec.max_attempts
        ):
            reason = f"gave up after {n} crashed attempts: {previous.data.tags.get('bench.reason', '')}"
            return variant_row(variant, "failed", reason[:480], {}, previous.info.run_id)
    if spec.force and not own:
        previous = None  # --force: the user asked for a fresh run, checkpoints included
        shutil.rmtree(run_dir, ignore_errors=True)
    resume = previous is not None or (run_dir / "last.ckpt").exists()
    # a run skipped last time (no device for it) is tried again, not resumed: it trained nothing
    skipped = previous is not None and previous.data.tags.get("bench.status") == "skipped"
    run_id = open_run(rec, variant, previous)
    if resume and not skipped and progress is not None:
        where = "its last checkpoint" if (run_dir / "last.ckpt").exists() else "the start"
        progress.note(f"  resuming {variant.name} from {where} into MLflow run {run_id}")
    return run_id, resume


def export_model(spec: TaskSpec, variant: Variant, model: Path) -> None:
    """Copy the run's ``model`` to its label's path, with a sidecar (its statistics) naming the
    run key. The label is the user's stable path, shared by every config of that name (an
    override keeps it), so the key says whose weights the file holds. The sidecar is written
    first without the key, then the file, then the key: a kill in between leaves a file no run
    key claims (exported again), never another config's weights under this key. No lock: labels
    are unique within a recipe, and one command at a time runs it (owner.py)."""
    export = spec.export_path(variant)
    source_meta = Path(f"{model}.json")
    meta = json.loads(source_meta.read_text()) if source_meta.is_file() else {}
    meta.pop("run_key", None)
    atomic_write_text(Path(f"{export}.json"), json.dumps(meta, indent=2) + "\n")
    atomic_copy(model, export)
    label_export(export, meta, variant)


def label_export(export: Path, meta: dict[str, Any], variant: Variant) -> None:
    """The last step of an export: only now does the sidecar say whose weights the file holds."""
    atomic_write_text(
        Path(f"{export}.json"), json.dumps({**meta, "run_key": variant.run_key}, indent=2) + "\n"
    )


def run_task(spec: TaskSpec, variant: Variant, progress: Any = None, client: Any = None, *,
             run_tags: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    """Claim and train one variant; returns its row (never raises for the variant's own failure,
    nor for an error of the tracking store or of the weights export: those fail this variant).
    ``run_tags``: set on the run once claimed (e.g. the GPU used)."""
    try:
        client = client or store.open_store(spec.tracking_uri)
        rec = Recording(
            client, spec.experiment_id, spec.recipe, spec.parent_id, tags=spec.inputs.get(variant.run_key, {})
        )
        got = claim(rec, spec, variant, progress)
    except Exception as exc:  # noqa: BLE001 - any store error: this variant fails, the matrix goes on
        return store_failure(variant, "claiming the variant", exc, spec)
    if isinstance(got, dict):
        return got
    run_id = got[0]
    for key, value in (run_tags or {}).items():
        client.set_tag(run_id, key, value)
    try:
        run_id, result = run_recorded(
            rec, variant, opened=got, run_dir=spec.run_dir(variant), progress=progress,
            export=lambda r: r.weights_path and export_model(spec, variant, Path(r.weights_path)),
        )  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - recording failed (the variant's own errors are results)
        row = store_failure(variant, "recording the run", exc, spec, run_id)
        _mark_failed(client, run_id, row["reason"])
        return row
    extra = {"delivered": result.delivered} if result.status == "finished" else {}
    return variant_row(variant, result.status, result.reason, result.metrics, run_id, **extra)


def _mark_failed(client: Any, run_id: str, reason: str) -> None:
    """Best effort: the store just failed; if it cannot take this either, the next run of the
    recipe closes the run (close_dead_runs)."""
    try:
        store.set_tags(client, run_id, {"bench.status": "failed", "bench.reason": reason[:5000]})
        client.set_terminated(run_id, "FAILED")
    except Exception:  # noqa: BLE001
        pass


def record_crash(spec: TaskSpec, variant: Variant, how: str, pid: int | None = None) -> dict[str, Any]:
    """The process training ``variant`` (``pid``, when known) died ``how`` without closing its run
    (OOM killer, segfault, CUDA fatal error): mark the run failed with why, keep how it died as
    ``errors/crash-<attempt>.txt`` (what ``crashes`` counts), and return its row. A run that
    process never opened (it died before its claim) is not touched."""
    try:
        client = store.open_store(spec.tracking_uri)
        run = find_previous(client, spec.experiment_id, variant.run_key)
    except Exception as exc:  # noqa: BLE001
        return store_failure(variant, f"recording that the variant's process died ({how})", exc, spec)
    mine = run is not None and (pid is None or run.data.tags.get("bench.pid") == str(pid))
    if not mine:
        return variant_row(variant, "failed", f"its process died before recording ({how})", {}, "")
    if run.info.status != "RUNNING":  # it closed its run, then died: the store has the truth
        return row_of_run(variant, run)
    run_id = run.info.run_id
    try:
        n = crashes(client, run) + 1
        reason = (f"the variant's process died ({how}); attempt {n} of {spec.max_attempts}: the next run resumes it "
                  "from its last checkpoint" if n < spec.max_attempts else
                  f"the variant's process died ({how}) {n} times: given up")  # fmt: skip
        name = f"{CRASH_PREFIX}{run.data.tags.get(ATTEMPT_TAG, '1')}.txt"
        store.log_text(client, run_id, f"{reason}\n", name)
        store.set_tags(
            client, run_id, {"bench.reason": reason, "bench.status": "failed", "bench.error": name}
        )
        client.set_terminated(run_id, "FAILED")
    except Exception as exc:  # noqa: BLE001
        return store_failure(variant, f"recording that the variant's process died ({how})", exc, spec)
    return variant_row(variant, "failed", reason, dict(run.data.metrics), run_id)
