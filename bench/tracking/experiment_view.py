"""What the MLflow UI shows first: the experiment's description, its model-training kind, and a
saved view of the latest study's variants side by side with the columns a user came for.

MLflow 3's UI opens an experiment in its GenAI mode on a runs table with one collapsed parent
and the columns Source / Models / Dataset. It reads (from its JS bundle, ``server/js/build``):

* the ``workflowType`` URL parameter (``machine_learning`` | ``genai``; else the browser's last
  choice, GenAI by default) and the experiment tag ``mlflow.experimentKind``;
* ``#/experiments/<id>/runs?viewStateShareKey=<key>``: a saved view, the experiment tag
  ``mlflow.sharedViewState.<key>`` = ``{"name", "createdAt", "updatedAt", "state"}`` (listed
  under "Views"); ``state`` is JSON with the search facets (``searchFilter``, ``orderByKey``,
  ``orderByAsc``, ...) and the table state (``selectedColumns`` as ``metrics.`test/acc``` etc.,
  ``columnOrder``, ``columnWidths``, ``runsHiddenMode``, ``groupBy``);
* the experiment tag ``mlflow.note.content``: the description shown above the runs.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

NOTE_TAG = "mlflow.note.content"
KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
SHARED_VIEW_PREFIX = "mlflow.sharedViewState."
VIEW_KEY = "bench-latest-study"
VIEW_NAME = "bench: latest study"  # listed under the UI's "Views"
WORKFLOW = {"workflowType": "machine_learning"}

# What a user compares, in this order (those no run has are left out of the view).
METRIC_COLUMNS = [
    "test/acc",
    "test/acc_raw",
    "test/acc_swa",
    "test/acc_ema",
    "throughput/train_img_s",
    "memory/peak_gpu_mb",
    "memory/peak_rss_mb",
    "time/wall_s",
]
SORT_METRIC = "test/acc"
RUN_NAME_COLUMN = "attributes.`Run Name`"  # the variant's name
MAX_FILTER_RUNS = 400  # beyond this the run-id filter is too long; filter by recipe instead


@dataclass
class Study:
    """The latest ``bench run`` of a recipe: its variants' MLflow runs, newest per run_key."""

    recipe: str
    experiment_id: str
    runs: list[Any]  # mlflow Run objects

    @property
    def run_ids(self) -> list[str]:
        return [r.info.run_id for r in self.runs]

    @property
    def finished_ids(self) -> list[str]:
        return [r.info.run_id for r in self.runs if r.data.tags.get("bench.status") == "finished"]

    @property
    def axes(self) -> list[str]:
        seen: dict[str, None] = {}
        for run in self.runs:
            seen.update({k[len("axis.") :]: None for k in run.data.tags if k.startswith("axis.")})
        return list(seen)


def _column(kind: str, key: str) -> str:
    return f"{kind}.`{key}`"  # the UI's canonical column id


def view_state(study: Study) -> dict[str, Any]:
    """The saved view: only this study's variants, best test accuracy first, the useful columns."""
    metrics = {k for run in study.runs for k in run.data.metrics}
    if 0 < len(study.runs) <= MAX_FILTER_RUNS:
        ids = ", ".join(f"'{run_id}'" for run_id in study.run_ids)
        search = f"attributes.run_id IN ({ids})"
    else:
        search = f"tags.`bench.recipe` = '{study.recipe}'"
    columns = [_column("tags", f"axis.{axis}") for axis in study.axes]
    columns += [_column("metrics", m) for m in METRIC_COLUMNS if m in metrics]
    columns += [_column("tags", "bench.status"), _column("attributes", "Duration")]
    order = [RUN_NAME_COLUMN, *columns[:-1], "duration"]
    return {
        "searchFilter": search,
        "orderByKey": _column("metrics", SORT_METRIC if SORT_METRIC in metrics else "time/wall_s"),
        "orderByAsc": False,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "modelVersionFilter": "All Runs",
        "datasetsFilter": [],
        "selectedColumns": columns,
        "columnOrder": order,
        "columnWidths": {RUN_NAME_COLUMN: 280},
        "runsHiddenMode": "SHOW_ALL",
        "groupBy": None,
        "viewMaximized": False,
        "runListHidden": False,
    }


def save_view(client, study: Study) -> str:
    """Store the comparison as the experiment's shared view; returns its key for the URL."""
    client.set_experiment_tag(study.experiment_id, KIND_TAG, MODEL_TRAINING)
    now = int(time.time() * 1000)
    envelope = {"name": VIEW_NAME, "createdAt": now, "updatedAt": now, "state": json.dumps(view_state(study))}
    client.set_experiment_tag(study.experiment_id, SHARED_VIEW_PREFIX + VIEW_KEY, json.dumps(envelope))
    return VIEW_KEY


def latest_study(client, experiment_id: str, recipe: str | None, run_keys: list[str] | None = None) -> Study:
    """The newest run of each of ``run_keys`` (a recipe's variants). Without them, of each run_key
    the latest ``bench run`` recorded: its parent's children, and the runs it skipped as already
    finished (they keep their first parent) when it has no children at all. Without ``recipe``,
    the recipe of the experiment's latest ``bench run``."""
    from bench.tracking.mlflow_store import search_all

    if recipe is None:
        parents = search_all(client, experiment_id, "tags.`bench.kind` = 'recipe'")
        if not parents:
            return Study("", experiment_id, [])
        recipe = parents[0].data.tags.get("bench.recipe", "")
    runs = search_all(client, experiment_id, f"tags.`bench.recipe` = '{recipe}'")  # newest first
    newest: dict[str, Any] = {}
    for run in runs:
        key = run.data.tags.get("bench.run_key")
        if key and key not in newest:
            newest[key] = run
    if run_keys is None:
        parents = [r for r in runs if r.data.tags.get("bench.kind") == "recipe"]
        latest = parents[0].info.run_id if parents else None
        keys = [k for k, r in newest.items() if r.data.tags.get("mlflow.parentRunId") == latest]
        run_keys = keys or list(newest)
    return Study(recipe, experiment_id, [newest[k] for k in run_keys if k in newest])


def experiment_url(base: str, experiment_id: str, view_key: str | None = None) -> str:
    params = dict(WORKFLOW)
    if view_key:
        params["viewStateShareKey"] = view_key
    return f"{base}/#/experiments/{experiment_id}/runs?{urlencode(params)}"


def compare_url(base: str, experiment_id: str, run_ids: list[str]) -> str:
    runs = quote(json.dumps(run_ids, separators=(",", ":")))
    experiments = quote(json.dumps([experiment_id], separators=(",", ":")))
    return f"{base}/#/compare-runs?runs={runs}&experiments={experiments}&{urlencode(WORKFLOW)}"


def home_url(base: str) -> str:
    return f"{base}/#/experiments?{urlencode(WORKFLOW)}"


def description(loaded: Any, results_dir: str | Path) -> str:
    """The experiment's note: what the recipe is for, how to run it again, where the report is."""
    recipe = loaded.recipe
    report = Path(results_dir).resolve() / loaded.name / "report.md"
    lines = [f"**{loaded.name}**" + (f": {recipe.description}" if recipe.description else "")]
    lines += [
        "",
        f"{len(loaded.variants)} runs ({len(recipe.seeds)} seed(s))"
        + (f"; baseline `{recipe.baseline}`" if recipe.baseline else ""),
        "",
        "Run again (finished variants are skipped, interrupted ones resume):",
        "",
        f"    bench run {shlex.quote(loaded.source)}",
        "",
        f"Report: `bench report {shlex.quote(loaded.source)}` writes `{report}`",
    ]
    return "\n".join(lines)


def describe_experiment(client, exp_id: str, loaded: Any, results_dir: str | Path) -> None:
    """Give the experiment its description (recipe description, command, report path) and mark
    it a model-training experiment, so MLflow's UI does not open it in GenAI mode."""
    client.set_experiment_tag(exp_id, NOTE_TAG, description(loaded, results_dir))
    client.set_experiment_tag(exp_id, KIND_TAG, MODEL_TRAINING)
