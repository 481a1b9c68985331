"""The Ray executor: every (variant, seed) of a ``bench run`` becomes one Ray task, spread over the
GPUs of this machine or of a cluster; ``bench tune --executor ray`` runs its workers the same way.

Ray schedules (one GPU per task by default, fractions allowed), sets ``CUDA_VISIBLE_DEVICES`` and
retries a task whose worker process died. Everything else stays bench's: each task claims its
variant in the tracking store (``run_task``) under a token that survives Ray's retries, so a retry
takes over the run its dead attempt left and resumes it from the checkpoint, and a variant is never
recorded twice. Rows come back as tasks finish; the driver writes ``runs.csv`` from the store.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.execution.cluster import RayOptions, check_reachable, connected, gpus_per_task, task_env
from bench.execution.ray_tasks import Board, describe, train_variant, tune_worker
from bench.execution.task import TaskSpec, record_crash
from bench.recipe.load import Variant

POLL_S = 1.0  # how often the driver looks at the board while waiting for tasks
STOP_WAIT = 60.0  # seconds cancelled tasks get to close their runs as interrupted


class RayExecutor:
    """Runs a recipe's tasks as Ray tasks, as many at once as the cluster's resources allow."""

    def __init__(self, options: RayOptions | None = None):
        self.options = options or RayOptions()

    def run(self, spec: TaskSpec, variants: list[Variant], progress: Any) -> Iterator[dict[str, Any]]:
        with connected(self.options) as ray:
            # Workers may start in another directory (or on another node): absolute paths only.
            spec = replace(spec, results_dir=str(Path(spec.results_dir).resolve()))
            check_reachable(
                ray, spec.tracking_uri, {"the results folder": Path(spec.results_dir)}, self.options
            )
            gpus = gpus_per_task(ray, self.options)
            board = ray.remote(num_cpus=0)(Board).remote()
            remote = ray.remote(train_variant).options(
                num_gpus=gpus, num_cpus=self.options.cpus, max_retries=max(spec.max_attempts - 1, 0),
                runtime_env={"env_vars": task_env()}, name="bench-variant",
            )  # fmt: skip
            tasks = {}
            for variant in variants:
                token = uuid.uuid4().hex
                tasks[remote.remote(spec, variant, token, board)] = (variant, token)
            progress.note(
                f"ray: {len(tasks)} task(s), {gpus:g} GPU and {self.options.cpus:g} CPU each; cluster "
                f"{_resources(ray)}"
            )
            yield from Watch(ray, board, tasks, progress).rows(spec)


class Watch:
    """The driver's side of the tasks in flight: shows what started where, hands back rows as
    tasks finish, records a task Ray gave up on, and cancels everything on Ctrl-C or SIGTERM."""

    def __init__(self, ray: Any, board: Any, tasks: dict[Any, tuple[Variant, str]], progress: Any):
        self.ray, self.board, self.tasks, self.progress = ray, board, tasks, progress
        self.total = len(tasks)
        self.done = 0
        self.seen: dict[str, Any] = {}  # token -> pid of the attempt already announced
        self.where: dict[str, dict[str, Any]] = {}

    def rows(self, spec: TaskSpec) -> Iterator[dict[str, Any]]:
        try:
            while self.tasks:
                ready, _ = self.ray.wait(list(self.tasks), num_returns=1, timeout=POLL_S)
                self.announce()
                for ref in ready:
                    variant, token = self.tasks.pop(ref)
                    row = self.result(spec, ref, variant)
                    self.done += 1
                    self.progress.name = f"{variant.name} ({describe(self.where.get(token, {}))})"
                    yield row
        except BaseException:  # Ctrl-C, SIGTERM, or the consumer stopped: no task outlives the run
            self.cancel()
            raise

    def announce(self) -> None:
        try:
            started = self.ray.get(self.board.snapshot.remote(), timeout=10)
        except Exception:  # noqa: BLE001 - the board is for display only
            return
        tokens = {token: variant for variant, token in self.tasks.values()}
        for token, where in started.items():
            if token not in tokens or self.seen.get(token) == where["pid"]:
                continue
            again = " again (its previous worker died)" if token in self.seen else ""
            self.seen[token], self.where[token] = where["pid"], where
            running = sum(1 for t in tokens if t in self.seen)
            self.progress.note(
                f"[{self.done}/{self.total} done, {running} running, {len(tokens) - running} waiting] "
                f"{tokens[token].name} started{again} on {describe(where)}"
            )

    def result(self, spec: TaskSpec, ref: Any, variant: Variant) -> dict[str, Any]:
        from ray.exceptions import RayError, RayTaskError

        try:
            row, where = self.ray.get(ref)
        except RayError as exc:  # every retry's worker died, or the task raised (e.g. store down)
            cause = exc.cause if isinstance(exc, RayTaskError) and exc.cause is not None else exc
            first = (str(cause).strip().splitlines() or [""])[0][:300]
            return record_crash(spec, variant, None, how=f"Ray: {type(cause).__name__}: {first}")
        return row

    def cancel(self) -> None:
        """Cancel every task; running ones get a KeyboardInterrupt and close their runs as
        interrupted (resumable), which is waited for."""
        refs = list(self.tasks)
        for ref in refs:
            self.ray.cancel(ref)
        if refs:
            self.ray.wait(refs, num_returns=len(refs), timeout=STOP_WAIT)


def run_tune_workers(options: Any, ray_options: RayOptions, say: Any) -> bool:
    """``bench tune --executor ray``: ``options.workers`` tuning workers as Ray tasks on the
    study's shared storage. False when a worker failed (the study keeps what it recorded)."""
    from bench.tune.plan import build_plan

    with connected(ray_options) as ray:
        plan = build_plan(replace(options, results_dir=str(Path(options.results_dir).resolve())), quiet=True)
        paths = {"the results folder": Path(plan.options.results_dir)}
        spec = plan.storage_spec()
        if spec.kind == "journal" or spec.dialect == "sqlite":
            paths["the Optuna storage"] = Path(spec.path)
        check_reachable(ray, plan.tracking_uri, paths, ray_options)
        gpus = gpus_per_task(ray, ray_options)
        board = ray.remote(num_cpus=0)(Board).remote()
        remote = ray.remote(tune_worker).options(
            num_gpus=gpus, num_cpus=ray_options.cpus, max_retries=2, runtime_env={"env_vars": task_env()},
            name="bench-tune-worker",
        )  # fmt: skip
        tasks = {remote.remote(plan.options, i, board): i for i in range(options.workers)}
        say(f"ray: {len(tasks)} tuning worker task(s), {gpus:g} GPU and {ray_options.cpus:g} CPU each")
        failed = []
        watch = Watch(ray, board, {}, _Say(say))
        try:
            pending = list(tasks)
            while pending:
                ready, pending = ray.wait(pending, num_returns=1, timeout=POLL_S)
                for ref in ready:
                    try:
                        ray.get(ref)
                    except Exception as exc:  # noqa: BLE001 - reported; the other workers go on
                        failed.append(f"worker {tasks[ref]}: {type(exc).__name__}")
        except BaseException:
            watch.tasks = {ref: (None, str(i)) for ref, i in tasks.items()}
            watch.cancel()
            raise
    if failed:
        say(
            f"error: {len(failed)} tuning worker task(s) failed ({', '.join(failed)}); the study keeps what they recorded"
        )
    return not failed


class _Say:
    def __init__(self, say: Any):
        self.note = say


def _resources(ray: Any) -> str:
    res = ray.cluster_resources()
    from bench.execution.cluster import alive_nodes

    return f"{alive_nodes(ray)} node(s), {res.get('GPU', 0):g} GPU, {res.get('CPU', 0):g} CPU"
