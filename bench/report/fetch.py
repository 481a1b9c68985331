"""Read a recipe's runs from MLflow into pandas: one row per child run (latest per run_key),
and the per-epoch metric histories."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from bench.errors import BenchError
from bench.tracking.mlflow_store import PARENT_TAG, search_all

# best test accuracy over epochs: chosen on the test set, so an oracle figure, never a result
ORACLE, ORACLE_OLD = "test/acc_oracle", "test/acc_best"
PROVENANCE_TAGS = ("bench.normalize", "bench.input.code")  # read with the env.* tags
TUNING = (
    "a tuning trial: its seeds chose this configuration, so its score is biased upwards (the winner's "
    "curse); the re-check's fresh seeds report it"
)


@dataclass
class Fetched:
    experiment_id: str
    runs: pd.DataFrame  # one row per child run: its identity, axis.* and env.* tags, metrics
    axes: list[str]  # axis labels (without "axis."), in first-seen order
    parent_id: str | None  # the latest recipe (parent) run, for artifacts
    params: dict[str, dict[str, str]]  # run_id -> params
    unfinished: str | None = None  # the latest bench run has not ended: what the report covers then
    superseded: str | None = None  # older runs of a variant and seed that ran again with another run key
    trials_counted: str | None = None  # a tune study's trials stand as results (no re-check finished)


def _int(text: str | None) -> int | None:
    return int(text) if text and text.lstrip("-").isdigit() else None


def replicate(tags: dict[str, str]) -> int | str | None:
    """What pairs a variant's run with the baseline's: the seed, or, when the recipe split the
    random streams (``bench.init_seed`` / ``bench.data_seed`` differing from it), a label of all
    three (``0 init=1 data=0``), so runs that share a seed but not a stream are not paired."""
    seed, init, data = (_stream(tags, t) for t in ("bench.seed", "bench.init_seed", "bench.data_seed"))
    if seed is None or (init == seed and data == seed):
        return seed
    return f"{seed} init={init} data={data}"


def _stream(tags: dict[str, str], tag: str) -> int | None:
    value = _int(tags.get(tag))
    return _int(tags.get("bench.seed")) if value is None else value


def fetch_runs(client, experiment: str) -> Fetched:
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        from bench.tracking.uris import redact_uri

        # the store is named: a different --results-dir or --tracking-uri is the usual cause
        raise BenchError(
            f"no MLflow experiment named '{experiment}' in the tracking store "
            f"{redact_uri(getattr(client, 'tracking_uri', '') or '?')}: run the recipe first, or pass the "
            "--results-dir / --tracking-uri its `bench run` used"
        )
    everything = search_all(client, exp.experiment_id)
    parents = [r for r in everything if r.data.tags.get("bench.kind") == "recipe"]
    children = [r for r in everything if r.data.tags.get(PARENT_TAG) and r.data.tags.get("bench.run_key")]
    # newest first: keep the latest run of every run_key, and of every variant and seed: an edited
    # recipe (or changed data) runs a variant again under a new run key, and its older runs would
    # otherwise count as more seeds of a config the recipe no longer has
    seen: set[str] = set()
    names: set[str] = set()
    older = 0
    rows, params, tuning = [], {}, set()
    for run in sorted(children, key=lambda r: r.info.start_time or 0, reverse=True):
        tags = run.data.tags
        key = tags["bench.run_key"]
        if key in seen:
            continue
        seen.add(key)
        name = tags.get("bench.variant", run.info.run_name)
        if name in names:
            older += 1
            continue
        names.add(name)
        status = tags.get("bench.status")
        if not status:  # still running, or the process died before recording an outcome
            status = "running" if run.info.status == "RUNNING" else run.info.status.lower()
        row: dict[str, Any] = {
            "run_id": run.info.run_id,
            "variant": name,
            "group": tags.get("bench.group", tags.get("bench.variant", run.info.run_name)),
            "seed": replicate(tags),
            # the streams each run drew from (its seed where the recipe did not split them): the
            # rows and columns of a crossed design (bench.report.variance)
            "init_seed": _stream(tags, "bench.init_seed"),
            "data_seed": _stream(tags, "bench.data_seed"),
            "status": status,
            "reason": tags.get("bench.reason", ""),
            "run_key": key,
            "variant_id": tags.get("bench.variant_id", ""),
            "start_time": run.info.start_time,
        }
        row.update((t, v) for t, v in tags.items() if t.startswith(("env.", "axis.")) or t in PROVENANCE_TAGS)
        row.update(run.data.metrics)
        delivered_metrics(row, tags.get("bench.delivered"))
        if ORACLE_OLD in row:  # runs from before the rename: the name must say it selected on test
            row.setdefault(ORACLE, row.pop(ORACLE_OLD))
        row["precision"] = run.data.params.get("train.precision")
        rows.append(row)
        if tags.get("bench.kind") == "trial":
            tuning.add(row["run_id"])
        params[run.info.run_id] = dict(run.data.params)
    if not rows:
        raise BenchError(f"experiment '{experiment}' has no variant runs yet; run the recipe first")
    trials_counted = None
    if any(r["status"] == "finished" and r["run_id"] not in tuning for r in rows):
        for row in rows:  # a tune study with a re-check: the seeds that chose are not the evidence
            if row["run_id"] in tuning and row["status"] == "finished":
                row["status"], row["reason"] = "tuning", TUNING
    elif counted := sum(r["status"] == "finished" for r in rows if r["run_id"] in tuning):
        trials_counted = (  # nothing else to report: say what these scores are
            f"{counted} tuning trial run(s) are reported as results, with no finished re-check run on fresh "
            "seeds: their seeds chose their configuration, so their scores are biased upwards (the winner's curse)"
        )
    rows.reverse()  # oldest first
    axes = list(dict.fromkeys(c[len("axis.") :] for row in rows for c in row if c.startswith("axis.")))
    frame = pd.DataFrame(rows)
    if "seed" in frame and frame["seed"].map(lambda s: isinstance(s, str)).any():
        frame["seed"] = frame["seed"].map(lambda s: s if s is None or pd.isna(s) else str(s))
    frame = frame.sort_values("start_time", kind="stable").reset_index(drop=True)
    latest = max(parents, key=lambda r: r.info.start_time or 0) if parents else None
    return Fetched(
        exp.experiment_id, frame, axes, latest.info.run_id if latest else None, params,
        unfinished=_unfinished(latest, frame),
        superseded=(
            f"{older} older run(s) of variants and seeds that ran again since under another run key (an edited "
            "recipe, other overrides or changed data) are left out: each variant and seed is reported by its "
            "latest run"
            if older
            else None
        ),
        trials_counted=trials_counted,
    )  # fmt: skip


def _unfinished(parent: Any, runs: pd.DataFrame) -> str | None:
    """A report read while ``bench run`` is still at work (or after it was killed, until the recipe
    runs again) covers only what is recorded so far: without a word it read as the whole study."""
    if parent is None or parent.info.status != "RUNNING":
        return None
    tags = parent.data.tags
    who = (
        f"pid {tags['bench.pid']} on {tags.get('bench.host', '?')}"
        if tags.get("bench.pid")
        else "its command"
    )
    planned = f" of the {tags['bench.variants']} it runs" if tags.get("bench.variants") else ""
    done = int((runs["status"] == "finished").sum())
    return (
        f"the latest `bench run` of this recipe ({who}) has not ended: this report covers the {done} "
        f"finished run(s) recorded so far{planned}; run `bench report` again once it is done (a killed "
        "command reads the same until the recipe runs again)"
    )


def delivered_metrics(row: dict[str, Any], delivered: str | None) -> None:
    """Make ``*/acc`` the accuracy of the model the run delivers and ``*/acc_raw`` the trained
    weights'. Runs recorded before ``bench.delivered`` existed scored ``*/acc`` on the raw weights
    and exported SWA's averaged model (EMA's raw weights), so they are mapped the same way."""
    if delivered is None:
        delivered = "swa" if "test/acc_swa" in row else "weights"
        for split in ("val", "test"):
            if f"{split}/acc" in row:
                row.setdefault(f"{split}/acc_raw", row[f"{split}/acc"])
    row["delivered"] = delivered
    if delivered == "weights":
        return
    for split in ("val", "test"):  # never trust which of two same-step values MLflow kept as latest
        if f"{split}/acc_{delivered}" in row:
            row[f"{split}/acc"] = row[f"{split}/acc_{delivered}"]


def fetch_histories(client, run_ids: list[str], keys: list[str]) -> pd.DataFrame:
    """Long frame ``run_id, key, step, value`` of the per-epoch metrics."""
    rows = []
    for run_id in run_ids:
        for key in keys:
            try:
                history = client.get_metric_history(run_id, key)
            except Exception:  # noqa: BLE001 - a metric the run never logged
                continue
            rows += [(run_id, key, m.step, m.value, m.timestamp) for m in history]
    frame = pd.DataFrame(rows, columns=["run_id", "key", "step", "value", "timestamp"])
    # the final metrics are logged again at the last step: keep one value per (run, key, step)
    return frame.sort_values("timestamp", kind="stable").drop_duplicates(
        ["run_id", "key", "step"], keep="first"
    )
