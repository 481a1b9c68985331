"""Creating a study's stores once, in the parent, before any worker starts: the MLflow experiment
and the study's parent run, the Optuna study (a journal repaired first, dead trials swept), and
``open_worker``, which each worker (the parent itself, or a spawned process) uses to load them."""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any

from bench.errors import RecipeError, TrackingError
from bench.tracking import mlflow_store as store
from bench.tracking.uris import redact_text
from bench.tune import liveness
from bench.tune.factories import make_pruner, make_sampler, quiet_optuna
from bench.tune.locks import StudyLock
from bench.tune.objective import MLFLOW_ATTR, TrialContext
from bench.tune.plan import TunePlan, say

PARENT_ATTR = "bench.mlflow_parent_run_id"
EXPERIMENT_ATTR = "bench.mlflow_experiment_id"


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
    exp_id = store.ensure_experiment(client, plan.tracking_uri, plan.experiment)
    notes = []
    if spec.kind == "journal":
        from bench.tune.journal import repair_journal

        notes.append(repair_journal(spec.path))
    if spec.dialect == "mysql":
        notes.append("MySQL: run one bench tune at a time on this study (no cross-machine claim lock)")
    storage = open_storage(plan)
    with StudyLock(spec, plan.study_name, plan.out_dir, plan.tune.liveness.lock_timeout)():
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
        notes += liveness.sweep(study, storage, spec.kind, plan.tune.liveness.grace_period)
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
        tags={"bench.kind": "study", "bench.study": plan.study_name, "bench.recipe": plan.recipe_name,
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
    """MLflow runs of finished trials that their worker did not close (it was killed)."""
    for t in study.get_trials(deepcopy=False):
        run_id = t.user_attrs.get(MLFLOW_ATTR)
        if not run_id or not t.state.is_finished() or t.system_attrs.get(liveness.CLAIM_ATTR) != t.number:
            continue  # unfinished, or an attribute copied into a retry from the trial it replaces
        try:
            if client.get_run(run_id).info.status != "RUNNING":
                continue
        except Exception:  # noqa: BLE001
            continue
        reason = t.user_attrs.get(liveness.REASON_ATTR, "its worker died while running it")
        client.set_tag(run_id, "bench.status", "failed" if t.state.name == "FAIL" else t.state.name.lower())
        client.set_tag(run_id, "bench.reason", reason)
        client.set_terminated(run_id, "FAILED" if t.state.name == "FAIL" else "FINISHED")


def open_worker(plan: TunePlan, index: int, client: Any | None = None) -> TrialContext:
    """Load the prepared study with this worker's sampler: what ``worker_loop`` needs."""
    import optuna

    quiet_optuna()
    client = client or store.open_store(plan.tracking_uri)
    storage = open_storage(plan)
    n_existing = len(
        optuna.load_study(study_name=plan.study_name, storage=storage).get_trials(deepcopy=False)
    )
    study = optuna.load_study(
        study_name=plan.study_name, storage=storage,
        sampler=make_sampler(plan, index, n_existing), pruner=make_pruner(plan),
    )  # fmt: skip
    attrs = study.user_attrs
    worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    return TrialContext(plan, plan.storage_spec(), client, attrs[EXPERIMENT_ATTR], attrs[PARENT_ATTR],
                        study, storage, worker_id)  # fmt: skip
