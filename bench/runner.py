"""``bench run``: every variant of a recipe, recorded in MLflow and in ``results/<recipe>/runs.csv``.

Run identity is the variant's ``run_key`` (hash of its resolved config and seed): a finished
variant is skipped on the next run, an interrupted one resumes from its checkpoint into the
same MLflow run, and an edited variant gets a new key and runs fresh.
"""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path
from typing import Any

import yaml

from bench.engine.hooks import VariantResult
from bench.errors import TrackingError
from bench.fileio import atomic_copy
from bench.progress import Progress
from bench.recipe.load import LoadedRecipe, Variant
from bench.results import recipe_dir, summary_text, write_table
from bench.tracking import mlflow_store as store
from bench.tracking.recorded import Recording, run_recorded
from bench.tracking.variant_runs import close_stale_runs, find_previous, owner_alive, owner_tags


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so the current variant is closed as KILLED. A
    KeyboardInterrupt, so that nothing catching ``Exception`` swallows it."""


def _on_sigterm(signum, frame):  # noqa: ARG001
    raise Terminated("terminated by SIGTERM")


class RecipeRunner:
    def __init__(self, loaded: LoadedRecipe, *, results_dir: str | Path = "results", tracking_uri: str | None = None,
                 force: bool = False, live_progress: bool | None = None):  # fmt: skip
        self.loaded = loaded
        self.results_dir = Path(results_dir)
        self.out_dir = recipe_dir(self.results_dir, loaded.name)
        self.uri = store.default_tracking_uri(self.results_dir, tracking_uri or loaded.recipe.tracking.uri)
        self.force = force
        self.live_progress = live_progress
        self.rows: list[dict[str, Any]] = []
        self._current: str | None = None  # the child run in progress

    def open_store(self):
        """The MLflow client; an unreachable store fails here, before any training, naming the URI."""
        try:
            return store.open_store(self.uri)
        except OSError as exc:
            raise TrackingError(f"cannot open the MLflow tracking store '{self.uri}': {exc}") from None

    def run(self) -> Any:
        client = self.open_store()
        experiment = self.loaded.recipe.tracking.experiment or self.loaded.name
        exp_id = store.ensure_experiment(client, self.uri, experiment)
        closed = close_stale_runs(client, exp_id)
        progress = Progress(len(self.loaded.variants), live=self.live_progress)
        if closed:
            progress.note(f"closed {len(closed)} MLflow run(s) that a killed process left RUNNING")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        parent = client.create_run(
            exp_id, run_name=f"{self.loaded.name} {time.strftime('%Y-%m-%d %H:%M:%S')}",
            tags={"bench.recipe": self.loaded.name, "bench.kind": "recipe", "bench.source": self.loaded.source,
                  "bench.variants": str(len(self.loaded.variants)), **owner_tags()},
        )  # fmt: skip
        parent_id = parent.info.run_id
        previous_handler = signal.signal(signal.SIGTERM, _on_sigterm)
        status, frame = "FINISHED", None
        try:
            store.log_text(client, parent_id, yaml.safe_dump(self.loaded.raw, sort_keys=False), "recipe.yaml")
            for variant in self.loaded.variants:
                self.run_one(client, exp_id, parent_id, variant, progress)
                write_table(self.rows, self.out_dir / "runs.csv")
        except (KeyboardInterrupt, Terminated):
            status = "KILLED"
            raise
        except BaseException:
            status = "FAILED"
            raise
        finally:
            signal.signal(signal.SIGTERM, previous_handler)
            try:
                if self._current is not None:  # a failure outside the variant's own handling
                    client.set_terminated(self._current, status if status != "FINISHED" else "FAILED")
                if self.rows:
                    frame = write_table(self.rows, self.out_dir / "runs.csv")
                    store.log_text(client, parent_id, frame.to_csv(index=False), "runs.csv")
            finally:
                client.set_terminated(parent_id, status)
        return frame

    def run_one(self, client, exp_id: str, parent_id: str, variant: Variant, progress: Progress) -> None:
        progress.variant_start(variant.name)
        run_dir = self.out_dir / "runs" / variant.run_key
        previous = None if self.force else find_previous(client, exp_id, variant.run_key)
        if previous is not None:
            done = previous.data.tags.get("bench.status")
            if done == "finished":
                progress.variant_end(f"already {done}, skipped (run_key {variant.run_key}; use --force to re-run)")
                self.rows.append(self.row(variant, done, previous.data.tags.get("bench.reason", ""),
                                          previous.data.metrics, previous.info.run_id))  # fmt: skip
                return
            if previous.info.status == "RUNNING" and owner_alive(previous):
                pid = previous.data.tags.get("bench.pid")
                reason = f"being run by another live process (pid {pid}); not touched"
                progress.variant_end("skipped", reason)
                self.rows.append(self.row(variant, "busy", reason, {}, previous.info.run_id))
                return
            where = "its last checkpoint" if (run_dir / "last.ckpt").exists() else "the start (no checkpoint)"
            progress.note(f"  resuming {variant.name} (was {previous.data.tags.get('bench.status', 'running')}) "
                          f"from {where} into MLflow run {previous.info.run_id}")  # fmt: skip
        elif run_dir.exists():
            shutil.rmtree(run_dir)  # --force, or leftovers without an MLflow record: start fresh
        rec = Recording(client, exp_id, self.loaded.name, parent_id)
        interrupted: BaseException | None = None
        try:
            run_id, result = run_recorded(
                rec, variant, previous=previous, run_dir=run_dir, progress=progress,
                export=lambda r: self.export_weights(variant, r), on_open=self._opened,
            )  # fmt: skip
        except (KeyboardInterrupt, Terminated) as exc:
            interrupted = exc
            run_id = self._current
            result = VariantResult("interrupted", reason=f"{type(exc).__name__}: interrupted; the next run "
                                   "resumes from the last checkpoint")  # fmt: skip
        self._current = None
        acc = result.metrics.get("test/acc")
        summary = result.reason or (
            f"test/acc {acc:.4f}, {result.metrics.get('throughput/train_img_s', 0):.0f} img/s" if acc is not None else ""
        )
        progress.variant_end(result.status, summary)
        self.rows.append(self.row(variant, result.status, result.reason, result.metrics, run_id))
        if interrupted is not None:
            raise interrupted

    def _opened(self, run_id: str) -> None:
        self._current = run_id

    def export_weights(self, variant: Variant, result: VariantResult) -> None:
        """``weights/<variant>.pt`` (and the statistics it expects), atomically, before the run is
        marked finished."""
        if not result.weights_path:
            return
        export = self.out_dir / "weights" / f"{variant.name}.pt"
        atomic_copy(Path(result.weights_path), export)
        sidecar = Path(result.weights_path + ".json")
        if sidecar.exists():
            atomic_copy(sidecar, Path(str(export) + ".json"))

    def row(
        self, variant: Variant, status: str, reason: str, metrics: dict[str, float], run_id: str
    ) -> dict[str, Any]:
        row: dict[str, Any] = {
            "variant": variant.name,
            "group": variant.group,
            "seed": variant.seed,
            "status": status,
            "reason": reason,
        }
        row.update(variant.axis_values)
        row.update(metrics)
        row.update({"variant_id": variant.variant_id, "run_key": variant.run_key, "mlflow_run_id": run_id})
        return row


def run_recipe(loaded: LoadedRecipe, **kwargs: Any) -> Any:
    frame = RecipeRunner(loaded, **kwargs).run()
    print(summary_text(frame))
    return frame
