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
from bench.progress import Progress
from bench.recipe.dotted import flatten
from bench.recipe.load import LoadedRecipe, Variant
from bench.recipe.matrix import axis_label
from bench.results import recipe_dir, summary_text, write_table
from bench.tracking import mlflow_store as store


class Terminated(Exception):
    """SIGTERM, turned into an exception so the current variant is closed as KILLED."""


def _on_sigterm(signum, frame):  # noqa: ARG001
    raise Terminated("terminated by SIGTERM")


def variant_tags(variant: Variant, recipe: str) -> dict[str, str]:
    keys = list(variant.axes)
    tags = {
        store.PARENT_TAG: "",
        "bench.recipe": recipe,
        "bench.variant": variant.name,
        "bench.group": variant.group,
        "bench.variant_id": variant.variant_id,
        "bench.run_key": variant.run_key,
        "bench.seed": str(variant.seed),
        "mlflow.runName": variant.name,
    }
    for key, value in variant.axes.items():
        tags[f"axis.{axis_label(key, keys)}"] = str(value)
    return tags


def find_previous(client, experiment_id: str, run_key: str):
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`bench.run_key` = '{run_key}'",
        order_by=["attributes.start_time DESC"],
    )
    return runs[0] if runs else None


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

    def run(self) -> Any:
        client = store.open_store(self.uri)  # fails here, before any training, if unreachable
        experiment = self.loaded.recipe.tracking.experiment or self.loaded.name
        exp_id = store.ensure_experiment(client, self.uri, experiment)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        parent = client.create_run(
            exp_id, run_name=f"{self.loaded.name} {time.strftime('%Y-%m-%d %H:%M:%S')}",
            tags={"bench.recipe": self.loaded.name, "bench.kind": "recipe", "bench.source": self.loaded.source,
                  "bench.variants": str(len(self.loaded.variants))},
        )  # fmt: skip
        parent_id = parent.info.run_id
        store.log_text(client, parent_id, yaml.safe_dump(self.loaded.raw, sort_keys=False), "recipe.yaml")
        progress = Progress(len(self.loaded.variants), live=self.live_progress)
        previous_handler = signal.signal(signal.SIGTERM, _on_sigterm)
        status, frame = "FINISHED", None
        try:
            for variant in self.loaded.variants:
                self.rows.append(self.run_one(client, exp_id, parent_id, variant, progress))
                write_table(self.rows, self.out_dir / "runs.csv")
        except (KeyboardInterrupt, Terminated):
            status = "KILLED"
            raise
        except BaseException:
            status = "FAILED"
            raise
        finally:
            signal.signal(signal.SIGTERM, previous_handler)
            if self.rows:
                frame = write_table(self.rows, self.out_dir / "runs.csv")
                store.log_text(client, parent_id, frame.to_csv(index=False), "runs.csv")
            client.set_terminated(parent_id, status)
        return frame

    def run_one(
        self, client, exp_id: str, parent_id: str, variant: Variant, progress: Progress
    ) -> dict[str, Any]:
        progress.variant_start(variant.name)
        run_dir = self.out_dir / "runs" / variant.run_key
        previous = find_previous(client, exp_id, variant.run_key)
        if previous is not None and not self.force:
            if previous.data.tags.get("bench.status") in ("finished", "skipped"):
                progress.variant_end("already done, skipped (use --force to re-run)")
                return self.row(variant, previous.data.tags["bench.status"], previous.data.tags.get("bench.reason", ""),
                                previous.data.metrics, previous.info.run_id)  # fmt: skip
        if self.force or previous is None or not (run_dir / "last.ckpt").exists():
            if self.force and run_dir.exists():
                shutil.rmtree(run_dir)
            run = client.create_run(
                exp_id,
                run_name=variant.name,
                tags={**variant_tags(variant, self.loaded.name), store.PARENT_TAG: parent_id},
            )
            run_id = run.info.run_id
            store.log_params(client, run_id, {**flatten(variant.config), "seed": variant.seed})
            store.log_text(client, run_id, yaml.safe_dump(variant.config, sort_keys=False), "config.yaml")
        else:
            run_id = previous.info.run_id  # resume into the same MLflow run: no duplicate, no gap
            client.update_run(run_id, status="RUNNING")
            client.set_tag(run_id, store.PARENT_TAG, parent_id)
        result = self.execute(client, run_id, variant, run_dir, progress)
        store.log_metrics(client, run_id, result.metrics, step=max(len(result.history) - 1, 0))
        client.set_tag(run_id, "bench.status", result.status)
        client.set_tag(run_id, "bench.reason", result.reason)
        mlflow_status = {"finished": "FINISHED", "skipped": "FINISHED", "interrupted": "KILLED"}.get(
            result.status, "FAILED"
        )
        client.set_terminated(run_id, mlflow_status)
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
        return self.row(variant, result.status, result.reason, result.metrics, run_id)

    def execute(
        self, client, run_id: str, variant: Variant, run_dir: Path, progress: Progress
    ) -> VariantResult:
        from bench.engine.loop import run_variant

        hook = store.MlflowEpochHook(client, run_id)
        try:
            result = run_variant(
                variant, hooks=[hook, SummaryHook(client, run_id)], run_dir=run_dir, progress=progress
            )
        except VariantSkipped as exc:
            return VariantResult("skipped", reason=str(exc))
        except Diverged as exc:
            store.flush()
            return VariantResult("failed", reason=str(exc))
        except (KeyboardInterrupt, Terminated) as exc:
            store.flush()
            client.set_tag(run_id, "bench.status", "interrupted")
            client.set_tag(
                run_id,
                "bench.reason",
                f"{type(exc).__name__}: interrupted; the next run resumes from the last checkpoint",
            )
            client.set_terminated(run_id, "KILLED")
            progress.variant_end("interrupted")
            raise
        except Exception as exc:  # noqa: BLE001 - one broken variant must not stop the matrix
            store.flush()
            store.log_exception(client, run_id, exc)
            first = str(exc).splitlines()[0] if str(exc) else ""
            return VariantResult("failed", reason=f"{type(exc).__name__}: {first}"[:500])
        return result

    def row(
        self, variant: Variant, status: str, reason: str, metrics: dict[str, float], run_id: str
    ) -> dict[str, Any]:
        keys = list(variant.axes)
        row: dict[str, Any] = {
            "variant": variant.name,
            "group": variant.group,
            "seed": variant.seed,
            "status": status,
            "reason": reason,
        }
        for key, value in variant.axes.items():
            row[axis_label(key, keys)] = value.get("name", str(value)) if isinstance(value, dict) else value
        row.update(metrics)
        row.update({"variant_id": variant.variant_id, "run_key": variant.run_key, "mlflow_run_id": run_id})
        return row


class SummaryHook:
    """Logs what a run is made of once it is built: parameter counts and the model summary."""

    def __init__(self, client, run_id: str):
        self.client, self.run_id = client, run_id

    def on_start(self, state: Any) -> None:
        from bench.components.models import count_parameters

        trainable, total = count_parameters(state.model)
        groups = "\n".join(f"{g.get('name')}: lr={g['lr']:.3g} wd={g['weight_decay']:.3g} params={sum(p.numel() for p in g['params'])}"
                           for g in state.optimizer.param_groups)  # fmt: skip
        text = f"trainable params: {trainable}\ntotal params: {total}\n\nparam groups:\n{groups}\n\n{state.model}\n"
        store.log_text(self.client, self.run_id, text, "model_summary.txt")

    def on_epoch_end(self, state: Any, epoch: int, record: dict[str, float]) -> None:
        pass

    def on_end(self, state: Any, result: Any) -> None:
        pass


def run_recipe(loaded: LoadedRecipe, **kwargs: Any) -> Any:
    frame = RecipeRunner(loaded, **kwargs).run()
    print(summary_text(frame))
    return frame
