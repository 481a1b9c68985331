"""``bench run``: every variant of a recipe, recorded in MLflow and in ``results/<recipe>/runs.csv``.

The driver opens the store, closes runs whose lease expired, opens one parent run, and hands
every (variant, seed) to an executor (local: a child process each; Ray: a task each). Tasks claim
their variant themselves (bench/execution/task.py), so a finished variant is skipped, a dead
owner's run resumes from its checkpoint, and two drivers on one recipe never train a variant
twice. ``runs.csv`` is rewritten from the store after every variant, under a lock, so it always
agrees with MLflow.

Run identity is the variant's ``run_key`` (hash of its resolved config, seed, and the content of
its inputs): an edited variant, or one whose start weights changed, gets a new key and runs fresh.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import yaml

from bench.errors import TrackingError
from bench.execution.task import TaskSpec, row_of_run, variant_row
from bench.fileio import atomic_write_text, file_lock
from bench.progress import Progress
from bench.recipe.load import LoadedRecipe
from bench.results import recipe_dir, summary_text, table_frame
from bench.signals import Terminated, install_sigterm
from bench.tracking import mlflow_store as store
from bench.tracking.experiment_view import describe_experiment
from bench.tracking.lease import Heartbeat
from bench.tracking.uris import redact_uri
from bench.tracking.variant_runs import close_stale_runs, owner_tags

__all__ = ["RecipeRunner", "Terminated", "run_recipe"]


class RecipeRunner:
    def __init__(self, loaded: LoadedRecipe, *, results_dir: str | Path = "results", tracking_uri: str | None = None,
                 force: bool = False, live_progress: bool | None = None, executor: Any = None,
                 max_attempts: int = 3):  # fmt: skip
        self.loaded = loaded
        self.results_dir = Path(results_dir)
        self.out_dir = recipe_dir(self.results_dir, loaded.name)
        self.uri = store.default_tracking_uri(self.results_dir, tracking_uri or loaded.recipe.tracking.uri)
        self.force = force
        self.live_progress = live_progress
        self.executor = executor
        self.max_attempts = max_attempts

    def open_store(self):
        """The MLflow client; an unreachable store fails here, before any training, naming the URI."""
        try:
            return store.open_store(self.uri)
        except OSError as exc:
            raise TrackingError(
                f"cannot open the MLflow tracking store '{redact_uri(self.uri)}': {exc}"
            ) from None

    def run(self) -> Any:
        client = self.open_store()
        experiment = self.loaded.recipe.tracking.experiment or self.loaded.name
        exp_id = store.ensure_experiment(client, self.uri, experiment)
        describe_experiment(client, exp_id, self.loaded, self.results_dir)  # what `bench ui` opens on
        progress = Progress(len(self.loaded.variants), live=self.live_progress)
        closed = close_stale_runs(client, exp_id)
        if closed:
            progress.note(
                f"closed {len(closed)} MLflow run(s) whose owner stopped renewing its lease (killed)"
            )
        self.out_dir.mkdir(parents=True, exist_ok=True)
        parent_id = client.create_run(
            exp_id, run_name=f"{self.loaded.name} {time.strftime('%Y-%m-%d %H:%M:%S')}",
            tags={"bench.recipe": self.loaded.name, "bench.kind": "recipe", "bench.source": self.loaded.source,
                  "bench.variants": str(len(self.loaded.variants)), **owner_tags()},
        ).info.run_id  # fmt: skip
        spec = TaskSpec(self.loaded.name, str(self.results_dir), self.uri, exp_id, parent_id, self.force,
                        self.max_attempts)  # fmt: skip
        previous_handler = install_sigterm()
        status, frame = "FINISHED", None
        try:
            with Heartbeat(client, parent_id):
                store.log_text(
                    client, parent_id, yaml.safe_dump(self.loaded.raw, sort_keys=False), "recipe.yaml"
                )
                for row in self.executor_or_default().run(spec, self.loaded.variants, progress):
                    progress.variant_end(row["status"], row_summary(row))
                    frame = self.write_runs_csv(client, exp_id)
        except (KeyboardInterrupt, Terminated):
            status = "KILLED"
            raise
        except BaseException:
            status = "FAILED"
            raise
        finally:
            signal.signal(signal.SIGTERM, previous_handler)
            try:
                frame = self.write_runs_csv(client, exp_id)
                store.log_text(client, parent_id, frame.to_csv(index=False), "runs.csv")
            finally:
                client.set_terminated(parent_id, status)
        return frame

    def executor_or_default(self):
        if self.executor is None:
            from bench.execution.local import LocalExecutor

            self.executor = LocalExecutor(live_progress=bool(self.live_progress))
        return self.executor

    def write_runs_csv(self, client, exp_id: str):
        """``runs.csv`` from the store (the truth), one row per variant of the recipe, written under
        the recipe's lock so concurrent drivers never interleave or regress it."""
        with file_lock(self.out_dir / ".runs.lock"):
            latest: dict[str, Any] = {}
            for run in store.search_all(client, exp_id, f"tags.`bench.recipe` = '{self.loaded.name}'"):
                key = run.data.tags.get("bench.run_key")
                if key and (key not in latest or run.info.start_time > latest[key].info.start_time):
                    latest[key] = run
            rows = [
                row_of_run(v, latest[v.run_key])
                if v.run_key in latest
                else variant_row(v, "pending", "", {}, "")
                for v in self.loaded.variants
            ]
            frame = table_frame(rows)
            atomic_write_text(self.out_dir / "runs.csv", frame.to_csv(index=False))
        return frame


def row_summary(row: dict[str, Any]) -> str:
    acc = row.get("test/acc")
    if row.get("reason"):
        return row["reason"]
    if acc is None or acc != acc:
        return ""
    return f"test/acc {acc:.4f}, {row.get('throughput/train_img_s', 0):.0f} img/s"


def run_recipe(loaded: LoadedRecipe, **kwargs: Any) -> Any:
    frame = RecipeRunner(loaded, **kwargs).run()
    print(summary_text(frame))
    return frame
