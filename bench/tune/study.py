"""The study: validated and created once in the parent (Optuna study, MLflow experiment and
parent run), then run by one or more workers that claim trials under a study-wide lock, so N
workers (local processes or the same command on several machines) finish exactly ``n_trials``."""

from __future__ import annotations

import copy
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import RecipeError
from bench.recipe.load import LoadedRecipe, Variant
from bench.recipe.matrix import stable_hash
from bench.recipe.schema import RecipeBody
from bench.recipe.tune import TuneConfig
from bench.tracking import mlflow_store as store
from bench.tune import storage as st
from bench.tune.space import Space, trial_config, validate_space
from bench.validate import load_validated as load_recipe
from bench.validate import validate_config as _validate

PARENT_ATTR = "bench.mlflow_parent_run_id"
EXPERIMENT_ATTR = "bench.mlflow_experiment_id"


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass
class TuneOptions:
    """Everything a worker process needs to rebuild the plan (picklable)."""

    recipe: str
    overrides: list[str] = field(default_factory=list)
    overlays: list[str] = field(default_factory=list)
    results_dir: str = "results"
    tracking_uri: str | None = None
    storage: str | None = None
    workers: int = 1
    study: str | None = None


@dataclass
class TunePlan:
    options: TuneOptions
    loaded: LoadedRecipe
    tune: TuneConfig
    base: dict[str, Any]
    space: Space
    seed: int
    notes: list[str]

    @property
    def recipe_name(self) -> str:
        return self.loaded.name

    @property
    def study_name(self) -> str:
        return self.options.study or self.tune.study or self.loaded.name

    @property
    def out_dir(self) -> Path:
        return Path(self.options.results_dir) / self.study_name

    @property
    def tracking_uri(self) -> str:
        return store.default_tracking_uri(
            self.options.results_dir, self.options.tracking_uri or self.loaded.recipe.tracking.uri
        )

    @property
    def experiment(self) -> str:
        return self.loaded.recipe.tracking.experiment or self.loaded.name

    def storage_spec(self) -> st.StorageSpec:
        return st.resolve_storage(self.options.storage, self.out_dir, self.options.workers)

    def trial_body(self, values: dict[str, Any]) -> RecipeBody:
        return _validate(RecipeBody, trial_config(self.base, values, self.loaded.source), self.loaded.source)

    def trial_variant(self, values: dict[str, Any], number: int) -> Variant:
        body = self.trial_body(values)
        resolved = body.model_dump(mode="json")
        name = f"trial={number}"
        return Variant(
            body=body, seed=self.seed, axes=dict(values), name=name, group=name,
            variant_id=stable_hash(values), run_key=stable_hash({"config": resolved, "seed": self.seed}, 16),
            source=self.loaded.source,
        )  # fmt: skip


def build_plan(options: TuneOptions, *, quiet: bool = False) -> TunePlan:
    """Load and validate the recipe and its search space; nothing is created yet."""
    loaded = load_recipe(options.recipe, options.overrides, options.overlays)
    source = loaded.source
    tune = loaded.recipe.tune
    if tune is None:
        raise RecipeError(
            "no tune: section; add one, e.g.\n  tune:\n    n_trials: 20\n    space:\n"
            "      train.optimizer.lr: {float: [1.0e-4, 1.0], log: true}",
            source=source,
            key="tune",
        )
    if len(loaded.variants) != 1 and loaded.raw.get("matrix"):
        raise RecipeError(
            f"bench tune studies one setup, but the matrix expands to {len(loaded.variants)} variants; "
            "remove matrix: or pin its axes with overrides (e.g. matrix.train.freeze=[0])",
            source=source,
            key="matrix",
        )
    notes: list[str] = []
    base = {k: copy.deepcopy(v) for k, v in loaded.raw.items() if k not in ("matrix", "seeds", "tune")}
    body = loaded.variants[0].body
    if not body.data.val_size:
        base.setdefault("data", {})["val_size"] = tune.default_val_size
        notes.append(
            f"data.val_size is 0: carving {tune.default_val_size:.0%} of the training data as the "
            "validation split the study tunes on (set data.val_size to choose)"
        )
    seeds = loaded.recipe.seeds
    if len(seeds) > 1:
        notes.append(f"the recipe lists {len(seeds)} seeds; trials train with the first ({seeds[0]})")
    space = Space(tune.params())
    validate_space(base, space, source)
    if tune.sampler.name == "grid" and space.grid_size() < tune.n_trials:
        notes.append(f"the grid has {space.grid_size()} points: n_trials capped from {tune.n_trials}")
        tune = tune.model_copy(update={"n_trials": space.grid_size()})
    plan = TunePlan(options, loaded, tune, base, space, seeds[0], notes)
    if not quiet:
        for note in notes:
            say(f"note: {note}")
    return plan


def make_sampler(plan: TunePlan, worker_index: int, n_existing: int) -> Any:
    import optuna

    cfg = plan.tune.sampler
    seed = None if cfg.seed is None else cfg.seed + 1000 * worker_index + n_existing
    kwargs = dict(cfg.kwargs)
    if cfg.name == "tpe":
        if plan.options.workers > 1 or plan.storage_spec().kind == "rdb":
            kwargs.setdefault("constant_liar", True)  # spread concurrent workers apart
        return optuna.samplers.TPESampler(seed=seed, **kwargs)
    if cfg.name == "random":
        return optuna.samplers.RandomSampler(seed=seed, **kwargs)
    if cfg.name == "grid":
        return _ask_tell_grid()(plan.space.grid(), seed=seed, **kwargs)
    return optuna.samplers.CmaEsSampler(seed=seed, **kwargs)


def _ask_tell_grid() -> type:
    """GridSampler calls ``study.stop()`` when the grid is used up, which raises outside
    ``optimize``; the claim loop stops on its own count, so that call is dropped."""
    import optuna

    class AskTellGridSampler(optuna.samplers.GridSampler):
        def after_trial(self, *args: Any, **kwargs: Any) -> None:
            try:
                super().after_trial(*args, **kwargs)
            except RuntimeError:
                pass

    return AskTellGridSampler


def make_pruner(plan: TunePlan) -> Any:
    import optuna

    cfg = plan.tune.pruner
    if cfg.name == "median":
        return optuna.pruners.MedianPruner(**cfg.kwargs)
    if cfg.name == "hyperband":
        kwargs = {"max_resource": plan.trial_body({}).train.epochs, **cfg.kwargs}
        return optuna.pruners.HyperbandPruner(**kwargs)
    return optuna.pruners.NopPruner()


def quiet_optuna() -> None:
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


# --- counting -------------------------------------------------------------------------------------


def counts(trials: list[Any]) -> dict[str, int]:
    """Trials per state, not counting those replaced by a retry."""
    gone = st.superseded(trials)
    out: dict[str, int] = {}
    for t in trials:
        if t.number not in gone:
            out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def finished_count(trials: list[Any]) -> int:
    c = counts(trials)
    return c.get("COMPLETE", 0) + c.get("PRUNED", 0) + c.get("FAIL", 0)


# --- parent -----------------------------------------------------------------------------------------


def prepare(plan: TunePlan) -> dict[str, Any]:
    """Create every store once, before workers fan out: the MLflow experiment and study parent
    run, the Optuna study (repairing a torn journal and sweeping stale trials first)."""
    import optuna

    quiet_optuna()
    spec = plan.storage_spec()
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    client = store.open_store(plan.tracking_uri)
    exp_id = store.ensure_experiment(client, plan.tracking_uri, plan.experiment)
    notes = []
    if spec.kind == "journal":
        note = st.repair_journal(spec.path)
        if note:
            notes.append(note)
    storage = spec.open()
    lock = st.StudyLock(spec, plan.study_name, plan.out_dir)
    with lock():
        try:
            study = optuna.create_study(
                storage=storage, study_name=plan.study_name, direction=plan.tune.objective.direction,
                load_if_exists=True, pruner=make_pruner(plan),
            )  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - storage back ends raise many kinds
            from bench.errors import TrackingError

            raise TrackingError(
                f"cannot create or load study '{plan.study_name}' in {spec.display}: {exc}"
            ) from None
        want = plan.tune.objective.direction
        if study.direction.name.lower() != want:
            raise RecipeError(
                f"study '{plan.study_name}' in {spec.display} was created to {study.direction.name.lower()}, "
                f"but the recipe says {want}; use another study name (tune.study or --study)",
                source=plan.loaded.source,
                key="tune.objective.direction",
            )
        notes += st.sweep_stale(study, spec, plan.out_dir)
        parent_id = study.user_attrs.get(PARENT_ATTR)
        created = False
        if parent_id is not None:
            try:
                client.get_run(parent_id)
            except Exception:  # noqa: BLE001 - another tracking store: make a parent here
                parent_id = None
        if parent_id is None:
            parent = client.create_run(
                exp_id, run_name=f"study {plan.study_name}",
                tags={"bench.kind": "study", "bench.study": plan.study_name, "bench.recipe": plan.recipe_name,
                      "bench.source": plan.loaded.source, "bench.storage": spec.display},
            )  # fmt: skip
            parent_id = parent.info.run_id
            study.set_user_attr(PARENT_ATTR, parent_id)
            study.set_user_attr(EXPERIMENT_ATTR, exp_id)
            created = True
    if created:
        import yaml

        tune_flat = {f"tune.{k}": v for k, v in plan.tune.model_dump(mode="json").items() if k != "space"}
        for key, entry in plan.tune.space.items():
            tune_flat[f"space.{key}"] = entry
        tune_flat["storage"] = spec.display
        store.log_params(client, parent_id, tune_flat)
        store.log_text(client, parent_id, yaml.safe_dump(plan.loaded.raw, sort_keys=False), "recipe.yaml")
    else:
        client.update_run(parent_id, status="RUNNING")
    _close_orphan_runs(client, study)
    for note in notes:
        say(f"note: {note}")
    return {
        "client": client,
        "experiment_id": exp_id,
        "parent_run_id": parent_id,
        "study": study,
        "spec": spec,
    }


def _close_orphan_runs(client: Any, study: Any) -> None:
    """MLflow runs of trials that failed without their worker closing them (killed workers)."""
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        run_id = t.user_attrs.get(st.MLFLOW_ATTR)
        if not run_id:
            continue
        try:
            run = client.get_run(run_id)
        except Exception:  # noqa: BLE001
            continue
        if run.info.status == "RUNNING":
            reason = t.user_attrs.get(st.REASON_ATTR, "its worker died while running it")
            client.set_tag(run_id, "bench.status", "failed")
            client.set_tag(run_id, "bench.reason", reason)
            client.set_terminated(run_id, "FAILED")


def run_study(options: TuneOptions) -> int:
    """``bench tune``: prepare once, run the workers, then write the outputs."""
    from bench.tune import outputs

    plan = build_plan(options)
    spec = plan.storage_spec()
    ctx = prepare(plan)
    client, parent_id, study = ctx["client"], ctx["parent_run_id"], ctx["study"]
    done = finished_count(study.get_trials(deepcopy=False))
    say(
        f"study {plan.study_name}: {plan.tune.n_trials} trials ({done} done), sampler "
        f"{plan.tune.sampler.name}, pruner {plan.tune.pruner.name}, objective "
        f"{plan.tune.objective.direction} {plan.tune.objective.metric}; storage {spec.display}; "
        f"{options.workers} worker(s)"
    )
    status = "FINISHED"
    try:
        if options.workers <= 1:
            worker_loop(plan, 0, ctx)
        else:
            _fan_out(options)
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        study = ctx["study"]
        summary = outputs.write_outputs(plan, study, client, parent_id)
        client.set_terminated(parent_id, status)
    say(summary)
    return 0


def _fan_out(options: TuneOptions) -> None:
    import multiprocessing as mp

    context = mp.get_context("spawn")
    procs = [
        context.Process(target=worker_entry, args=(options, i), name=f"bench-tune-{i}")
        for i in range(options.workers)
    ]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        for p in procs:
            p.join(timeout=30)
        raise
    bad = [p.exitcode for p in procs if p.exitcode]
    if bad:
        say(f"warning: {len(bad)} worker(s) exited with codes {bad}; the study keeps what they recorded")


def worker_entry(options: TuneOptions, index: int) -> None:
    """A spawned worker process: the stores already exist; open them and claim trials."""
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(options.workers, 1)))
    quiet_optuna()
    plan = build_plan(options, quiet=True)
    try:
        worker_loop(plan, index, None)
    except KeyboardInterrupt:
        pass


@dataclass
class WorkerContext:
    plan: TunePlan
    client: Any
    experiment_id: str
    parent_run_id: str
    study: Any
    storage: Any
    worker_id: str
    heartbeat_interval: float = st.HEARTBEAT_INTERVAL


def worker_loop(plan: TunePlan, index: int, prepared: dict[str, Any] | None) -> int:
    """Claim trials until the study has ``n_trials`` (or this command's timeout passes)."""
    import optuna

    from bench.tune.objective import run_trial

    spec = plan.storage_spec()
    client = prepared["client"] if prepared else store.open_store(plan.tracking_uri)
    storage = spec.open()
    probe = optuna.load_study(study_name=plan.study_name, storage=storage)
    n_existing = len(probe.get_trials(deepcopy=False))
    study = optuna.load_study(
        study_name=plan.study_name, storage=storage,
        sampler=make_sampler(plan, index, n_existing), pruner=make_pruner(plan),
    )  # fmt: skip
    attrs = study.user_attrs
    token = st.WorkerToken(plan.out_dir)
    ctx = WorkerContext(plan, client, attrs[EXPERIMENT_ATTR], attrs[PARENT_ATTR], study, storage, token.id)
    if prepared is not None:
        prepared["study"] = study
    lock = st.StudyLock(spec, plan.study_name, plan.out_dir)
    started = time.monotonic()
    ran = 0
    try:
        while True:
            if plan.tune.timeout and time.monotonic() - started > plan.tune.timeout:
                say(f"worker {index}: timeout of {plan.tune.timeout:.0f}s reached; re-run to continue")
                break
            trial = _claim(plan, study, spec, lock, token)
            if trial is None:
                break
            outcome = run_trial(ctx, trial)
            ran += 1
            _report(plan, study, outcome, index)
    finally:
        token.close()
    return ran


def _claim(plan: TunePlan, study: Any, spec: st.StorageSpec, lock: Any, token: st.WorkerToken) -> Any:
    """Atomically: sweep stale trials, count, and ask for the next trial (or None when full)."""
    from optuna.trial import TrialState

    with lock():
        if spec.kind == "journal" and st.tail_is_torn(spec.path):
            note = st.repair_journal(spec.path)
            if note:
                say(f"note: {note}")
        for note in st.sweep_stale(study, spec, plan.out_dir):
            say(f"note: {note}")
        trials = study.get_trials(deepcopy=False)
        gone = st.superseded(trials)
        active = [t for t in trials if t.number not in gone]
        waiting = any(t.state == TrialState.WAITING for t in active)
        if not waiting and len(active) >= plan.tune.n_trials:
            return None
        trial = study.ask()
        trial.set_user_attr(st.WORKER_ATTR, token.id)
        return trial


def _report(plan: TunePlan, study: Any, outcome: Any, index: int) -> None:
    trials = study.get_trials(deepcopy=False)
    done = finished_count(trials)
    left = max(plan.tune.n_trials - done, 0)
    value = f"{plan.tune.objective.metric}={outcome.value:.4f}" if outcome.value is not None else "no value"
    state = {"COMPLETE": "complete", "PRUNED": f"pruned after {outcome.epochs} epoch(s)", "FAIL": "FAILED"}[
        outcome.state
    ]
    extra = f" ({outcome.reason})" if outcome.state == "FAIL" and outcome.reason else ""
    who = f"[w{index}] " if plan.options.workers > 1 else ""
    say(
        f"{who}trial {outcome.number} {Space.describe(outcome.params)}: {state}, {value}{extra} "
        f"[{done}/{plan.tune.n_trials} done, {left} left]"
    )
