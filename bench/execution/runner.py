"""``bench run``: every variant of a recipe, recorded in MLflow and in ``results/<recipe>/runs.csv``.

The driver owns the recipe (owner.py: one command per recipe), so every run of the recipe it
finds RUNNING was left by a dead owner: it closes them, opens one parent run, and hands every
(variant, seed) to an executor in the run order (order.py). ``runs.csv`` is rewritten from the
store after every variant, so it always agrees with MLflow.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from bench.errors import BenchError, FolderVanished, TrackingError
from bench.execution.estimate import expected_times
from bench.execution.identity import with_input_fingerprints
from bench.execution.order import DEFAULT_ORDER, ORDER_SEED_TAG, ORDER_TAG, run_order
from bench.execution.order import order_seed as order_seed_of
from bench.execution.progress import Progress
from bench.execution.results import recipe_dir, summary_text, table_frame
from bench.execution.task import TaskSpec, first_line, row_of_run, variant_row
from bench.recipe.load import LoadedRecipe
from bench.tracking import mlflow_store as store
from bench.tracking.experiment_view import COMMAND_TAG, describe_experiment, rerun_command
from bench.tracking.uris import redact_text, redact_uri
from bench.tracking.variant_runs import close_dead_runs, owner_tags
from bench.util.fileio import atomic_write_text
from bench.util.signals import closing_status, deferred_signals, install_sigterm

EXIT_FAILED, EXIT_STORE = 1, 3


class RecipeRunner:
    """Runs one recipe; its caller owns the recipe (``bench.commands.api.run`` holds owner.py's lock)."""

    def __init__(self, loaded: LoadedRecipe, *, results_dir: str | Path = "results", tracking_uri: str | None = None,
                 force: bool = False, live_progress: bool | None = None, executor: Any = None,
                 max_attempts: int = 3, order: str = DEFAULT_ORDER, order_seed: int | None = None,
                 until: Any = None):  # fmt: skip
        self.source = loaded  # without input fingerprints: what --until-decided derives new seeds from
        self.until = until  # an until_decided.UntilDecided, or None: the recipe's seeds only
        # fingerprinted now: an earlier recipe of this command may just have written its weights
        self.loaded, self.inputs = with_input_fingerprints(loaded)
        self.results_dir = Path(results_dir)
        self.out_dir = recipe_dir(self.results_dir, loaded.name)
        self.uri = store.default_tracking_uri(self.results_dir, tracking_uri or loaded.recipe.tracking.uri)
        self.tracking_uri = tracking_uri  # as given: the experiment's "run again" line repeats it
        self.force = force
        self.live_progress = live_progress
        self.executor = executor
        self.max_attempts = max_attempts
        self.order = order
        self.order_seed = order_seed_of(loaded.name) if order_seed is None else order_seed
        self.tally: Counter[str] = Counter()  # this command's rows by status, store and runs.csv errors
        self.rows: list[dict[str, Any]] = []

    def open_store(self):
        """The MLflow client; an unreachable store fails here, before any training, naming the URI."""
        try:
            return store.open_store(self.uri)
        except OSError as exc:
            raise TrackingError(
                f"cannot open the MLflow tracking store '{redact_uri(self.uri)}': {exc}"
            ) from None

    def start(self, client: Any, progress: Progress) -> tuple[str, str]:
        """The experiment, the runs a dead owner left RUNNING closed, this command's parent run. A
        store that cannot do this is unusable: TrackingError (exit 3) before anything trains."""
        try:
            exp_id = store.ensure_experiment(client, self.uri, self.loaded.experiment)
            # what `bench ui` opens on
            describe_experiment(
                client, exp_id, self.loaded, self.results_dir, self.tracking_uri, self.flags()
            )
            closed = close_dead_runs(client, exp_id, self.loaded.name)
            parent_id = client.create_run(
                exp_id, run_name=f"{self.loaded.name} {time.strftime('%Y-%m-%d %H:%M:%S')}",
                tags={"bench.recipe": self.loaded.name, "bench.kind": "recipe", "bench.source": self.loaded.source,
                      COMMAND_TAG: rerun_command(self.loaded, self.results_dir, self.tracking_uri, self.flags()),
                      "bench.variants": str(len(self.loaded.variants)), **owner_tags(),
                      ORDER_TAG: self.order, ORDER_SEED_TAG: str(self.order_seed), **self.until_tags()},
            ).info.run_id  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - mlflow and its database raise many types
            raise TrackingError(
                f"the MLflow tracking store '{redact_uri(self.uri)}' cannot record runs: {first_line(exc)}"
            ) from None
        if closed:
            progress.note(
                f"closed {len(closed)} MLflow run(s) that a killed bench run of this recipe left running"
            )
        return exp_id, parent_id

    def run(self) -> Any:
        if self.executor is None:
            from bench.execution.local import LocalExecutor

            # None: the child decides by its stderr (the driver's): a per-batch bar on a terminal
            self.executor = LocalExecutor(live_progress=self.live_progress)
        executor = self.executor
        if hasattr(executor, "warm"):  # the local executor's forkserver starts while the store opens
            executor.warm()
        client = self.open_store()
        progress = Progress(len(self.loaded.variants), live=self.live_progress)
        progress.expect(expected_times(self.loaded, self.results_dir, self.force))
        if getattr(executor, "on_this_machine", False):  # skipped at once here (amp_fp16 without CUDA): 0 s
            from bench.measure.hardware import cuda_available, skipped_names

            progress.skipping(skipped_names(self.loaded.variants, cuda_available()))
        exp_id, parent_id = self.start(client, progress)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.watched = {path: (what, identity(path)) for path, what in self.kept_paths().items()}
        store_gone = False
        spec = TaskSpec(self.loaded.name, str(self.results_dir), self.uri, exp_id, parent_id, self.force,
                        self.max_attempts, self.inputs)  # fmt: skip
        previous_handler = install_sigterm()
        status = "FINISHED"
        try:
            with self.recording("writing the parent run's recipe.yaml"):
                store.log_text(
                    client, parent_id, yaml.safe_dump(self.loaded.raw, sort_keys=False), "recipe.yaml"
                )
            ordered = run_order(self.loaded.variants, self.order, self.order_seed)
            if getattr(executor, "on_this_machine", False):  # Ray's workers fetch into their own caches
                self.fetch_pretrained(client, exp_id, progress)
            while ordered:  # one round without --until-decided
                progress.pending([v.name for v in ordered])
                for row in executor.run(spec, ordered, progress):
                    self.rows.append(row)
                    self.tally[row["status"]] += 1
                    self.tally["store_error"] += bool(row.get("store_error"))
                    progress.variant_end(row["status"], row_summary(row))
                    self.check_folders(len(self.rows))
                    self.write_runs_csv(client, exp_id)
                ordered = self.next_round(client, exp_id, progress)
        except BaseException as exc:  # Ctrl-C or SIGTERM (Terminated): KILLED; anything else: FAILED
            status = closing_status(exc)
            # a store deleted with the folder: writing now would only start a new, empty one there
            store_gone = isinstance(exc, FolderVanished) and exc.store_gone
            raise
        finally:
            with deferred_signals():  # a signal now is acted on once the statuses are written
                frame = None if store_gone else self.close_parent(client, exp_id, parent_id, status)
            signal.signal(signal.SIGTERM, previous_handler)
        return frame

    def close_parent(self, client, exp_id: str, parent_id: str, status: str) -> Any:
        """The last runs.csv, saved in the parent run too, and the parent closed with ``status``."""
        frame = self.write_runs_csv(client, exp_id, final=True)
        try:
            store.log_text(client, parent_id, frame.to_csv(index=False), "runs.csv")
        except Exception as exc:  # noqa: BLE001 - an artifact store failing here must not keep it open
            self.parent_warning(f"could not save runs.csv in the parent MLflow run {parent_id}", exc)
        try:
            client.set_terminated(parent_id, status)
        except Exception as exc:  # noqa: BLE001 - the next run of this recipe closes it
            self.parent_warning(f"could not close the parent MLflow run {parent_id}", exc)
        return frame

    def fetch_pretrained(self, client, exp_id: str, progress: Progress) -> None:
        """The pretrained weights of the runs still to train, fetched once before the first starts."""
        from bench.validate.preflight import fetch_pretrained

        if not any(v.body.model.pretrained for v in self.loaded.variants):
            return
        with self.recording("reading which runs are finished"):
            rows = self.rows_from_store(client, exp_id)
        todo = [v for v, row in zip(self.loaded.variants, rows) if self.force or row["status"] != "finished"]
        fetch_pretrained(todo, self.loaded.source, progress.note)

    def flags(self) -> list[str]:
        """The options of this command that shape what runs: the "run again" line repeats them."""
        out = [] if self.order == DEFAULT_ORDER else ["--order", self.order]
        if self.order_seed != order_seed_of(self.loaded.name):
            out += ["--order-seed", str(self.order_seed)]
        if self.until is not None:  # its looks are planned up to --max-seeds: keep the value
            out += ["--until-decided", "--max-seeds", str(self.until.max_seeds)]
            if self.until.min_effect is not None:
                out += ["--min-effect", f"{self.until.min_effect:g}"]
        return out

    def until_tags(self) -> dict[str, str]:
        if self.until is None:
            return {}
        from bench.report.sequential import SETTINGS_TAG

        return {SETTINGS_TAG: json.dumps(self.until.settings(self.source), sort_keys=True)}

    def next_round(self, client, exp_id: str, progress: Progress) -> list:
        """``--until-decided``: the next round's variants (one seed more where undecided), decided
        from the store's runs of the rounds so far; empty when every comparison is decided or capped."""
        if self.until is None:
            return []
        import dataclasses

        from bench.execution.until_decided import next_variants

        with self.recording("reading the runs --until-decided decides from"):
            rows = self.rows_from_store(client, exp_id)
        new, verdicts = next_variants(self.source, self.loaded.variants, rows, self.until)
        text = ", ".join(f"{g}: {s.verdict} ({s.n} pairs)" for g, s in verdicts.items())
        if not new:
            progress.note(f"until decided: done; {text}")
            return []
        keyed, inputs = with_input_fingerprints(dataclasses.replace(self.source, variants=new))
        self.inputs.update(inputs)  # the TaskSpec holds this dict: the new runs get their input tags
        self.loaded.variants.extend(keyed.variants)
        progress.total += len(keyed.variants)
        progress.note(f"until decided: {text}; adding {', '.join(v.name for v in keyed.variants)}")
        return run_order(keyed.variants, self.order, self.order_seed)

    def write_runs_csv(self, client, exp_id: str, final: bool = False):
        """``runs.csv`` from the store (the truth), written atomically (readers never see half a
        file). A store that cannot be read or a file that cannot be written is warned about, not
        fatal (the next run writes the file); returns the table of what is known."""
        path = self.out_dir / "runs.csv"
        try:
            rows = self.rows_from_store(client, exp_id)
        except Exception as exc:  # noqa: BLE001
            self.warn(
                f"cannot read the runs from the MLflow store '{self.uri}': {first_line(exc)}; {path} not updated"
            )
            self.tally["store_error"] += final
            known = {r["run_key"]: r for r in self.rows}
            rows = [
                known.get(v.run_key) or variant_row(v, "pending", "", {}, "") for v in self.loaded.variants
            ]
            return table_frame(rows)
        frame = table_frame(rows)
        try:
            atomic_write_text(path, frame.to_csv(index=False))
        except OSError as exc:
            self.warn(f"cannot write {path}: {exc}; the runs are recorded in MLflow ({self.uri})")
            self.tally["csv_error"] += final
        return frame

    def rows_from_store(self, client, exp_id: str) -> list[dict[str, Any]]:
        runs = store.search_all(client, exp_id, f"tags.`bench.recipe` = '{self.loaded.name}'")
        latest: dict[str, Any] = {}  # run key -> its latest run
        for run in sorted(runs, key=lambda r: r.info.start_time, reverse=True):
            latest.setdefault(run.data.tags.get("bench.run_key"), run)
        return [
            row_of_run(v, latest[v.run_key]) if v.run_key in latest else variant_row(v, "pending", "", {}, "")
            for v in self.loaded.variants
        ]

    @contextlib.contextmanager
    def recording(self, what: str) -> Iterator[None]:
        """A store failure outside the variants' own runs (each of those is recorded as its row's
        reason): exit 3 with one line naming the store, not a traceback and exit 1."""
        try:
            yield
        except (BenchError, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - mlflow, its database and artifact store raise many types
            raise TrackingError(
                f"the MLflow tracking store '{redact_uri(self.uri)}' failed while {what}: {first_line(exc)}; "
                "finished variants are recorded: run the same command again once the store works"
            ) from None

    def kept_paths(self) -> dict[Path, str]:
        """What must stay where it is while the command runs: the results folder, the recipe's
        folder in it, and an SQLite store's file (by default in the results folder)."""
        db = store.sqlite_file(self.uri)
        paths = {self.results_dir: "the results folder", self.out_dir: "the recipe's results folder"}
        return paths | ({db: "the MLflow store file"} if db is not None and db.exists() else {})

    def check_folders(self, done: int) -> None:
        """Stop when one of ``kept_paths`` was deleted or moved (another file or folder now has its
        name: a variant's process makes the folders it writes to again): the next variants would
        fail one by one, or train with their checkpoints and weights going nowhere lasting."""
        gone = next((p for p, (_, ident) in self.watched.items() if identity(p) != ident), None)
        if gone is None:
            return
        db = store.sqlite_file(self.uri)
        store_gone = db in self.watched and identity(db) != self.watched[db][1]
        recorded = (f"the MLflow store {db} and the runs recorded in it went too" if store_gone
                    else f"the runs recorded in the MLflow store '{redact_uri(self.uri)}' are kept")  # fmt: skip
        raise FolderVanished(
            f"{self.watched[gone][0]} {gone} was deleted or moved while bench run ran ({done} of "
            f"{len(self.loaded.variants)} runs done): checkpoints, exported weights and runs.csv in it are gone; "
            f"{recorded}; stopped. Run the same command again: it trains what is missing",
            store_gone=store_gone,
        )

    def parent_warning(self, text: str, exc: Exception) -> None:
        self.warn(f"{text}: {first_line(exc)}")
        self.tally["store_error"] += 1

    @staticmethod
    def warn(text: str) -> None:
        print(f"warning: {redact_text(text)}", file=sys.stderr, flush=True)

    def exit_code(self) -> int:
        """0 all done; 3 the store failed to record something; 1 a variant failed (or runs.csv
        could not be written). Busy (4) is decided before the runner starts (owner.py)."""
        if self.tally["store_error"]:
            return EXIT_STORE
        return EXIT_FAILED if self.tally["failed"] or self.tally["csv_error"] else 0


def identity(path: Path) -> tuple[int, int] | None:
    """The file or folder at ``path`` (device, inode), None when there is none: a folder deleted and
    made again under the same name is another one."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def exit_code(codes: list[int]) -> int:
    """Several recipes' codes as one: the most serious (3, then 1)."""
    return next((c for c in (EXIT_STORE, EXIT_FAILED) if c in codes), 0)


def row_summary(row: dict[str, Any]) -> str:
    acc = row.get("test/acc")
    if row.get("reason"):
        return row["reason"]
    if acc is None or acc != acc:
        return ""
    rate = row.get("throughput/train_img_s")
    speed = f"{rate:.0f} img/s" if rate is not None and rate == rate else "too few steps to time"
    return f"test/acc {acc:.4f}, {speed}"


def run_recipe(loaded: LoadedRecipe, **kwargs: Any) -> RecipeRunner:
    """Run ``loaded`` and print the summary; the runner tells the table (``frame``) and ``exit_code()``."""
    runner = RecipeRunner(loaded, **kwargs)
    runner.frame = runner.run()
    print(summary_text(runner.frame))
    return runner
