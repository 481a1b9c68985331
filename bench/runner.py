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

from bench.engine.errors import Diverged, VariantSkipped
from bench.engine.hooks import VariantResult
from bench.errors import Terminated, TrackingError
from bench.progress import Progress
from bench.recipe.dotted import flatten
from bench.recipe.load import LoadedRecipe, Variant
from bench.results import recipe_dir, summary_text, write_table
from bench.tracking import mlflow_store as store
from bench.tracking.variant_runs import (
    EpochMetricsHook,
    MetricLog,
    SummaryHook,
    close_stale_runs,
    find_previous,
    owner_alive,
    owner_tags,
    variant_tags,
)


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
            if done in ("finished", "skipped"):
                progress.variant_end(
                    f"already {done}, skipped (run_key {variant.run_key}; use --force to re-run)"
                )
                self.rows.append(
                    self.row(
                        variant,
                        done,
                        previous.data.tags.get("bench.reason", ""),
                        previous.data.metrics,
                        previous.info.run_id,
                    )  # fmt: skip
                )
                return
            if previous.info.status == "RUNNING" and owner_alive(previous):
                pid = previous.data.tags.get("bench.pid")
                reason = f"being run by another live process (pid {pid}); not touched"
                progress.variant_end("skipped", reason)
                self.rows.append(self.row(variant, "busy", reason, {}, previous.info.run_id))
                return
        if previous is None:
            if run_dir.exists():
                shutil.rmtree(run_dir)  # --force, or leftovers without an MLflow record: start fresh
            run = client.create_run(
                exp_id,
                run_name=variant.name,
                tags={**variant_tags(variant, self.loaded.name), store.PARENT_TAG: parent_id,
                      "bench.status": "running", **owner_tags()},
            )  # fmt: skip
            run_id = run.info.run_id
            self._current = run_id
            store.log_params(client, run_id, {**flatten(variant.config), "seed": variant.seed})
            store.log_text(client, run_id, yaml.safe_dump(variant.config, sort_keys=False), "config.yaml")
        else:
            run_id = previous.info.run_id  # resume into the same MLflow run: no duplicate, no gap
            self._current = run_id
            client.update_run(run_id, status="RUNNING")
            for key, value in {store.PARENT_TAG: parent_id, "bench.status": "running", "bench.reason": "",
                               **owner_tags()}.items():  # fmt: skip
                client.set_tag(run_id, key, value)
            where = "its last checkpoint" if (run_dir / "last.ckpt").exists() else "the start (no checkpoint)"
            progress.note(
                f"  resuming {variant.name} (was {previous.data.tags.get('bench.status', 'running')}) "
                f"from {where} into MLflow run {run_id}"
            )
        metric_log = MetricLog(client, run_id, resume=previous is not None)
        interrupted: BaseException | None = None
        try:
            result = self.execute(client, run_id, variant, run_dir, progress, metric_log)
        except (KeyboardInterrupt, Terminated) as exc:
            interrupted = exc
            result = VariantResult(
                "interrupted",
                reason=f"{type(exc).__name__}: interrupted; the next run resumes from the last checkpoint",
            )
        if result.metrics:
            last = result.history[-1] if result.history else {}
            final = {k: v for k, v in result.metrics.items() if k not in last}  # already logged per epoch
            metric_log.log(final, step=max(len(result.history) - 1, 0), synchronous=True)
        store.flush()
        client.set_tag(run_id, "bench.status", result.status)
        client.set_tag(run_id, "bench.reason", result.reason[:5000])
        mlflow_status = {"finished": "FINISHED", "skipped": "FINISHED", "interrupted": "KILLED"}.get(
            result.status, "FAILED"
        )
        client.set_terminated(run_id, mlflow_status)
        self._current = None
        if result.weights_path:
            export = self.out_dir / "weights" / f"{variant.name}.pt"
            export.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(result.weights_path, export)
        acc = result.metrics.get("test/acc")
        summary = result.reason or (
            f"test/acc {acc:.4f}, {result.metrics.get('throughput/train_img_s', 0):.0f} img/s"
            if acc is not None
            else ""
        )
        progress.variant_end(result.status, summary)
        self.rows.append(self.row(variant, result.status, result.reason, result.metrics, run_id))
        if interrupted is not None:
            raise interrupted

    def execute(
        self, client, run_id: str, variant: Variant, run_dir: Path, progress: Progress, metric_log: MetricLog
    ) -> VariantResult:
        from bench.engine.loop import run_variant

        hook = EpochMetricsHook(client, run_id, metric_log)
        try:
            result = run_variant(
                variant, hooks=[hook, SummaryHook(client, run_id)], run_dir=run_dir, progress=progress
            )
        except VariantSkipped as exc:
            return VariantResult("skipped", reason=str(exc))
        except Diverged as exc:
            store.flush()
            client.set_tag(run_id, "bench.failed_epoch", str(exc.epoch))
            return VariantResult("failed", reason=f"diverged: {exc}")
        except (KeyboardInterrupt, Terminated):
            store.flush()
            raise
        except Exception as exc:  # noqa: BLE001 - one broken variant must not stop the matrix
            store.flush()
            store.log_exception(client, run_id, exc)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            where = ""
            if hook.state is not None:
                epoch = hook.state.epoch
                client.set_tag(run_id, "bench.failed_epoch", str(epoch))
                where = f" (in epoch {epoch})"
            return VariantResult("failed", reason=f"{type(exc).__name__}: {first}"[:480] + where)
        return result

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
