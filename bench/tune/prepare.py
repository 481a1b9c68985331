"""Creating a study's stores once, in the parent, before any worker starts: the MLflow experiment
and the study's parent run, the Optuna study (an older bench's journal copied in, dead workers'
trials failed and retried), and ``open_worker``, which each worker (the parent itself, or a
spawned process) uses to load them. ``close_orphan_runs`` closes the MLflow runs that killed
workers left RUNNING, at the start and at the end of every command."""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any

from bench.errors import RecipeError, TrackingError
from bench.tracking import mlflow_store as store
from bench.tracking.uris import redact_text
from bench.tune import liveness
from bench.tune.objective import MLFLOW_ATTR, TrialContext
from bench.tune.plan import TunePlan, say
from bench.tune.storage import migrate_journal

PARENT_ATTR = "bench.mlflow_parent_run_id"
EXPERIMENT_ATTR = "bench.mlflow_experiment_id"


def quiet_optuna() -> None:
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # bench reports each trial itself
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def make_pruner(plan: TunePlan) -> Any:
    from bench.tune.pruners import build

    return build(plan.tune.pruner.name, dict(plan.tune.pruner.kwargs), plan.epochs)


def make_sampler(plan: TunePlan, worker_index: int, n_existing: int) -> Any:
    """Seeded per worker and per restart, so workers and continued studies do not repeat points."""
    import optuna

    cfg = plan.tune.sampler
    seed = None if cfg.seed is None else cfg.seed + 1000 * worker_index + n_existing
    kwargs = dict(cfg.kwargs)
    if cfg.name == "grid":  # stops optimize when used up
        return optuna.samplers.GridSampler(plan.space.grid(), seed=seed, **kwargs)
    if cfg.name == "tpe" and (plan.options.workers > 1 or plan.storage_spec().kind == "rdb"):
        kwargs.setdefault("constant_liar", True)  # spread concurrent workers apart
    samplers = optuna.samplers
    cls = {"tpe": samplers.TPESampler, "random": samplers.RandomSampler}.get(cfg.name, samplers.CmaEsSampler)
    return cls(seed=seed, **kwargs)


def reseed_for_trial(study: Any, plan: TunePlan, number: int) -> None:
    """Draw trial ``number``'s parameters from a sampler seeded by that number. The storage hands each
    number out once across every worker and every command on the study; seeded by worker index and
    the trials seen at start, two ``bench tune`` commands started together (each a worker 0 that saw
    no trials) drew the same points, trial for trial. A lone command stays reproducible."""
    if plan.tune.sampler.seed is not None and plan.tune.sampler.name != "grid":  # grid: before_trial chose
        study.sampler = make_sampler(plan, 0, number)


def open_storage(plan: TunePlan) -> Any:
    liv = plan.tune.liveness
    return plan.storage_spec().open(liv.heartbeat_interval, liv.grace_period)


def prepare(plan: TunePlan) -> tuple[Any, str]:
    """Create (or load) the study and its MLflow parent run; returns (client, parent run id)."""
    import optuna

    quiet_optuna()
    spec = plan.storage_spec()
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    client = store.open_store(plan.tracking_uri)
    exp_id = store.ensure_experiment(client, plan.tracking_uri, plan.loaded.experiment)
    notes = [migrate_journal(spec, plan.out_dir, plan.study_name)]
    storage = open_storage(plan)
    try:
        study = optuna.create_study(
            storage=storage, study_name=plan.study_name, direction=plan.tune.objective.direction,
            load_if_exists=True, pruner=make_pruner(plan),
        )  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - storage back ends raise many kinds
        raise TrackingError(
            f"cannot create or load study '{plan.study_name}' in {spec.display}: {redact_text(str(exc), spec.url)}"
        ) from None
    if study.direction.name.lower() != plan.tune.objective.direction:
        raise RecipeError(
            f"study '{plan.study_name}' in {spec.display} was created to {study.direction.name.lower()}, "
            f"but the recipe says {plan.tune.objective.direction}; use another study name (tune.study or --study)",
            source=plan.loaded.source,
            key="tune.objective.direction",
        )
    objective = plan.tune.objective  # named in optuna-dashboard, not "Objective 0"
    if study.metric_names != [name := f"{objective.metric} ({objective.reduce} epoch)"]:
        study.set_metric_names([name])
    notes += liveness.sweep(study, storage, plan.tune.liveness.grace_period)
    parent_id = _parent_run(plan, study, client, exp_id)
    close_orphan_runs(client, study)
    for note in filter(None, notes):
        say(f"note: {note}")
    return client, parent_id


def _parent_run(plan: TunePlan, study: Any, client: Any, exp_id: str) -> str:
    """The study's MLflow parent run: the one recorded in the study, else a new one."""
    import yaml

    parent_id = study.user_attrs.get(PARENT_ATTR)
    if parent_id is not None:
        try:
            client.get_run(parent_id)
            client.update_run(parent_id, status="RUNNING")
            return parent_id
        except Exception:  # noqa: BLE001 - another tracking store: make a parent here
            pass
    spec = plan.storage_spec()
    parent_id = client.create_run(
        exp_id, run_name=f"study {plan.study_name}",
        tags={"bench.kind": "study", "bench.study": plan.study_name, "bench.recipe": plan.loaded.name,
              "bench.source": plan.loaded.source, "bench.storage": spec.display},
    ).info.run_id  # fmt: skip
    study.set_user_attr(PARENT_ATTR, parent_id)
    study.set_user_attr(EXPERIMENT_ATTR, exp_id)
    flat = {f"tune.{k}": v for k, v in plan.tune.model_dump(mode="json").items() if k != "space"}
    flat.update({f"space.{key}": entry for key, entry in plan.tune.space.items()})
    flat["storage"] = spec.display
    store.log_params(client, parent_id, flat)
    store.log_text(client, parent_id, yaml.safe_dump(plan.loaded.raw, sort_keys=False), "recipe.yaml")
    return parent_id


def close_orphan_runs(client: Any, study: Any) -> None:
    """Close as FAILED the MLflow runs of failed trials that are still RUNNING: their worker died
    (a trial that stops any other way closes its run before Optuna hears of it). The trial's retry
    trains the same parameters in a run of its own (``bench.retry_of`` names the original)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried_as = {n: t.number for t in trials for n in t.system_attrs.get("retry_history", [])}
    for t in trials:
        run_id = t.user_attrs.get(MLFLOW_ATTR)
        if not run_id or t.state != TrialState.FAIL:
            continue
        try:
            run = client.get_run(run_id)
        except Exception:  # noqa: BLE001 - a run in another tracking store
            continue
        if run.info.status != "RUNNING" or run.data.tags.get("bench.trial_number") != str(t.number):
            continue  # closed, or a retry's copy of its original's attribute
        then = f"; trial {retried_as[t.number]} retries its parameters" if t.number in retried_as else ""
        store.set_tags(client, run_id, {"bench.status": "failed",
                                        "bench.reason": f"its worker stopped sending heartbeats (killed){then}"})  # fmt: skip
        client.set_terminated(run_id, "FAILED")


def open_worker(plan: TunePlan, index: int, client: Any | None = None) -> TrialContext:
    """Load the prepared study with this worker's sampler: what ``worker_loop`` needs."""
    import optuna

    quiet_optuna()
    client = client or store.open_store(plan.tracking_uri)
    storage = open_storage(plan)
    study = optuna.load_study(study_name=plan.study_name, storage=storage, pruner=make_pruner(plan))
    study.sampler = make_sampler(plan, index, len(study.get_trials(deepcopy=False)))
    attrs = study.user_attrs
    worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    return TrialContext(plan, client, attrs[EXPERIMENT_ATTR], attrs[PARENT_ATTR],
                        study, storage, worker_id)  # fmt: skip
