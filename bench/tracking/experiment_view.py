"""What the MLflow UI shows first: the experiment's description, its model-training kind, and a
saved view of the latest study: one row per variant, the metrics a user came for first.

MLflow 3's UI opens an experiment in its GenAI mode on a runs table with one collapsed parent
and the columns Source / Models / Dataset. It reads (from its JS bundle, ``server/js/build``):

* the ``workflowType`` URL parameter (``machine_learning`` | ``genai``; else the browser's last
  choice, GenAI by default) and the experiment tag ``mlflow.experimentKind``;
* ``#/experiments/<id>/runs?viewStateShareKey=<key>``: a saved view, the experiment tag
  ``mlflow.sharedViewState.<key>`` = ``{"name", "createdAt", "updatedAt", "state"}`` (listed
  under "Views"); ``state`` is JSON with the search facets (``searchFilter``, ``orderByKey``,
  ``orderByAsc``, ...) and the table state (``selectedColumns`` as ``metrics.`test/acc``` etc.,
  ``columnOrder``, ``columnWidths``, ``runsHiddenMode``, ``groupBy`` as ``RunsGroupByConfig``,
  ``groupsExpanded``) and the chart view's (``compareRunCharts``, ``compareRunSections``);
* ``compareRunsMode=CHART``: the runs page's chart view;
* the experiment tag ``mlflow.note.content``: the description shown above the runs.

What it does not offer: number rounding in the runs table (3.17 shows the logged value; the
column-wide formatting in upstream ``metricColumnFormat.ts`` is newer), and closing the Assistant
panel (browser localStorage only: ``AssistantFloatingButton.tsx`` opens it once per browser on a
localhost server, ``AssistantContext.tsx`` keeps ``mlflow.assistant.panelOpen``).
"""

from __future__ import annotations

import json
import os
import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench.tracking.uris import redact_text

NOTE_TAG = "mlflow.note.content"
KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
SHARED_VIEW_PREFIX = "mlflow.sharedViewState."
VIEW_KEY = "bench-latest-study"
VIEW_NAME = "bench: latest study"  # listed under the UI's "Views"
COMPARE_KEY = "bench-compare"
COMPARE_NAME = "bench: accuracy vs throughput"
COMPARE_SECTION = "bench: finished variants"
COMMAND_TAG = "bench.command"  # on a bench run's parent run: the command (rerun_command)
GROUP_TAG = "bench.group"  # the variant, the same for each of its seeds
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
COMPARE_Y, COMPARE_X = "test/acc", "throughput/train_img_s"
RUN_NAME_COLUMN = "attributes.`Run Name`"  # the variant's name
CREATED_COLUMN = "runDateAndNestInfo"
MAX_FILTER_RUNS = 400  # beyond this the run-id filter is too long; filter by recipe instead


@dataclass
class Study:
    """The latest ``bench run`` of a recipe: its variants' MLflow runs, newest per run_key."""

    recipe: str
    experiment_id: str
    runs: list[Any]  # mlflow Run objects

    @property
    def finished(self) -> list[Any]:
        return [r for r in self.runs if r.data.tags.get("bench.status") == "finished"]


def _column(kind: str, key: str) -> str:
    return f"{kind}.`{key}`"  # the UI's canonical column id


def _run_filter(runs: list[Any], recipe: str) -> str:
    if 0 < len(runs) <= MAX_FILTER_RUNS:
        ids = ", ".join(f"'{run.info.run_id}'" for run in runs)
        return f"attributes.run_id IN ({ids})"
    return f"tags.`bench.recipe` = '{recipe}'"


def _base_state(study: Study, runs: list[Any]) -> dict[str, Any]:
    """What both views share: these runs, grouped by variant, the metrics a user came for first
    (the axis columns after them: with six axes they pushed the metrics off-screen)."""
    metrics = {k for run in runs for k in run.data.metrics}
    axes = dict.fromkeys(
        k[len("axis.") :] for run in study.runs for k in run.data.tags if k.startswith("axis.")
    )
    groups = sorted({run.data.tags[GROUP_TAG] for run in runs if GROUP_TAG in run.data.tags})
    if all(run.data.metrics.get("test/acc_raw") == run.data.metrics.get("test/acc") for run in runs):
        metrics.discard("test/acc_raw")  # the same number twice (no SWA/EMA variant): one column
    metric_columns = [_column("metrics", m) for m in METRIC_COLUMNS if m in metrics]
    columns = metric_columns + [_column("tags", f"axis.{axis}") for axis in axes]
    columns += [_column("tags", "bench.status"), _column("attributes", "Duration")]
    # One row per variant (its seeds averaged), as the UI's "Group by" menu stores it (RunsGroupByConfig).
    group_by = {"aggregateFunction": "average", "groupByKeys": [{"mode": "tag", "groupByData": GROUP_TAG}]}
    return {
        "searchFilter": _run_filter(runs, study.recipe),
        "orderByKey": _column("metrics", SORT_METRIC if SORT_METRIC in metrics else "time/wall_s"),
        "orderByAsc": False,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "modelVersionFilter": "All Runs",
        "datasetsFilter": [],
        "selectedColumns": columns,
        # the grid applies this order (ag-grid applyColumnState); "duration" and "runDateAndNestInfo"
        # (Created, pinned left beside the name: narrowed, it tells nothing here) are those columns' ids
        "columnOrder": [RUN_NAME_COLUMN, *columns[:-1], "duration"],
        "columnWidths": {RUN_NAME_COLUMN: 300, CREATED_COLUMN: 110, **{c: 150 for c in metric_columns}},
        "runsHiddenMode": "SHOW_ALL",
        "groupBy": group_by if groups else None,  # ungrouped when no run has the tag (older bench)
        # Every variant folded (the UI unfolds a group unless it is listed as False): its seeds a
        # click away. Ids as the UI makes them: ``tag.<tag>.<value>``.
        "groupsExpanded": {f"tag.{GROUP_TAG}.{group}": False for group in groups},
        "useGroupedValuesInCharts": True,
        "viewMaximized": False,
        "runListHidden": False,
    }


def compare_state(study: Study) -> dict[str, Any]:
    """The ``--compare`` view: the finished variants' test accuracy against throughput, one point
    per variant. MLflow's own compare page cannot be told its axes (it plots the first param
    against the first metric), so this is the runs page's chart view with a saved scatter chart,
    in its own section ahead of the charts MLflow adds for every metric."""
    section = {
        "uuid": "bench-compare",
        "name": COMPARE_SECTION,
        "display": True,
        "isReordered": False,
        "deleted": False,
        "isGenerated": False,
        "columns": 1,  # the chart across the section (default: 3 cards a row, 360 px high)
        "cardHeight": 480,
    }
    scatter = {
        "uuid": "bench-acc-vs-throughput",
        "type": "SCATTER",
        "xaxis": {"key": COMPARE_X, "type": "METRIC"},
        "yaxis": {"key": COMPARE_Y, "type": "METRIC"},
        "runsCountToCompare": 100,
        "metricSectionId": section["uuid"],
        "deleted": False,
        "isGenerated": False,
    }
    return {
        **_base_state(study, study.finished),
        "compareRunCharts": [scatter],
        "compareRunSections": [section],
        "isAccordionReordered": True,  # keep this section first (else MLflow sorts sections by name)
        "hideEmptyCharts": True,
    }


def save_view(client, study: Study, compare: bool = False) -> str:
    """Store the landing view (this study's variants, one row each, best test accuracy first) or,
    with ``compare``, the accuracy-vs-throughput chart view as a shared view; returns its key."""
    state = compare_state(study) if compare else _base_state(study, study.runs)
    key, name = (COMPARE_KEY, COMPARE_NAME) if compare else (VIEW_KEY, VIEW_NAME)
    client.set_experiment_tag(study.experiment_id, KIND_TAG, MODEL_TRAINING)
    now = int(time.time() * 1000)
    envelope = {"name": name, "createdAt": now, "updatedAt": now, "state": json.dumps(state)}
    client.set_experiment_tag(study.experiment_id, SHARED_VIEW_PREFIX + key, json.dumps(envelope))
    return key


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


def experiment_url(base: str, experiment_id: str, view_key: str | None = None, charts: bool = False) -> str:
    params = dict(WORKFLOW)
    if charts:
        params["compareRunsMode"] = "CHART"  # the runs page's chart view (default "TABLE")
    if view_key:
        params["viewStateShareKey"] = view_key
    return f"{base}/#/experiments/{experiment_id}/runs?{urlencode(params)}"


def home_url(base: str) -> str:
    return f"{base}/#/experiments?{urlencode(WORKFLOW)}"


def store_options(results_dir: str | Path, tracking_uri: str | None) -> list[str]:
    """The options that point a command at these results and this store (none for the defaults)."""
    out = [] if Path(results_dir) == Path("results") else ["--results-dir", str(results_dir)]
    return out + (["--tracking-uri", tracking_uri] if tracking_uri else [])


def rerun_command(
    loaded: Any, results_dir: str | Path, tracking_uri: str | None = None, flags: Sequence[str] = ()
) -> str:
    """The ``bench run`` command that gave these runs: its overlays, overrides, folders, ``flags``
    (the run order, --until-decided) and data directory: a bare ``bench run RECIPE`` would run
    another config, or fail to find the data. Passwords in URIs are redacted (it is recorded)."""
    words = ["bench", "run"]
    for overlay in loaded.overlays:
        words += ["--overlay", overlay]
    words += [loaded.source, *loaded.overrides, *store_options(results_dir, tracking_uri), *flags]
    # the data directory, where the recipe leaves it to the environment (bench/util/dataroot.py)
    data_dir = os.environ.get("BENCH_DATA_DIR") if loaded.recipe.data.root is None else None
    command = (f"BENCH_DATA_DIR={shlex.quote(data_dir)} " if data_dir else "") + shlex.join(words)
    return redact_text(command, tracking_uri)


def description(
    loaded: Any, results_dir: str | Path, tracking_uri: str | None = None, flags: Sequence[str] = ()
) -> str:
    """The experiment's note: what the recipe is for, how to run it again, where the report is."""
    recipe = loaded.recipe
    report = Path(results_dir).resolve() / loaded.name / "report.md"
    report_words = ["bench", "report", loaded.source, *store_options(results_dir, tracking_uri)]
    lines = [f"**{loaded.name}**" + (f": {recipe.description}" if recipe.description else "")]
    lines += [
        "",
        f"{len(loaded.variants)} runs ({len(recipe.seeds)} seed(s))"
        + (f"; baseline `{recipe.baseline}`" if recipe.baseline else ""),
        "",
        "Run again (finished variants are skipped, interrupted ones resume):",
        "",
        f"    {rerun_command(loaded, results_dir, tracking_uri, flags)}",
        "",
        f"Report: `{redact_text(shlex.join(report_words), tracking_uri)}` writes `{report}`",
    ]
    return "\n".join(lines)


def describe_experiment(
    client, exp_id: str, loaded: Any, results_dir: str | Path, tracking_uri: str | None = None,
    flags: Sequence[str] = (),
) -> None:  # fmt: skip
    """Give the experiment its description (recipe description, command, report path) and mark
    it a model-training experiment, so MLflow's UI does not open it in GenAI mode."""
    client.set_experiment_tag(exp_id, NOTE_TAG, description(loaded, results_dir, tracking_uri, flags))
    client.set_experiment_tag(exp_id, KIND_TAG, MODEL_TRAINING)
