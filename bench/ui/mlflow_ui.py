"""``bench ui [RECIPE]``: the MLflow UI on the recipe's store, landing on the latest study's
variants one row each (or, with ``--compare``, its finished ones' accuracy against throughput)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

from bench.tracking import experiment_view as view
from bench.tracking.uris import redact_uri
from bench.ui import server


@dataclass
class Landing:
    url: str
    lines: list[str]  # what the user is told about where it lands


def server_command(host: str, port: int) -> list[str]:
    """The store is not on the command line (``ps`` shows it to every user of the machine, with its
    credentials): the server reads it from ``MLFLOW_BACKEND_STORE_URI`` (``server_env``)."""
    return [sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(port), "--workers", "1"]


def server_env(uri: str) -> dict[str, str]:
    return {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_BACKEND_STORE_URI": uri}


def landing(client, base: str, experiment: str | None, loaded: Any | None, results_dir: str,
            compare: bool = False) -> Landing:  # fmt: skip
    """Prepare the experiment (description, model-training kind, saved view) and pick the URL."""
    if experiment is None:
        return Landing(view.home_url(base), [])
    exp = client.get_experiment_by_name(experiment)
    if exp is None or exp.lifecycle_stage == "deleted":
        hint = f"bench run {loaded.source}" if loaded is not None else "bench run RECIPE"
        return Landing(
            view.home_url(base), [f"no experiment '{experiment}' in this store yet; run `{hint}` first"]
        )
    exp_id = exp.experiment_id
    if loaded is not None:
        view.describe_experiment(client, exp_id, loaded, results_dir)
    run_keys = None  # the latest `bench run` of the experiment's latest recipe
    if loaded is not None:
        from bench.execution.identity import with_input_fingerprints

        keyed = with_input_fingerprints(loaded)[0]  # the run keys `bench run` records (inputs included)
        run_keys = [v.run_key for v in keyed.variants]
    study = view.latest_study(client, exp_id, loaded and loaded.name, run_keys)
    if not study.runs:
        client.set_experiment_tag(exp_id, view.KIND_TAG, view.MODEL_TRAINING)
        return Landing(
            view.experiment_url(base, exp_id), [f"experiment '{experiment}' has no variant runs yet"]
        )
    finished = study.finished
    summary = f"experiment '{experiment}': latest study of '{study.recipe}', {len(study.runs)} run(s), {len(finished)} finished"
    if compare and finished:
        key = view.save_view(client, study, compare=True)
        what = f"{view.COMPARE_Y} against {view.COMPARE_X}, one point per finished variant (mean over seeds)"
        return Landing(
            view.experiment_url(base, exp_id, key, charts=True),
            [summary, f"{what} (saved view '{view.COMPARE_NAME}'):"],
        )
    key = view.save_view(client, study)
    lines = [summary]
    if compare:
        lines.append("no finished run to compare yet; showing the runs table instead")
    lines.append(
        f"one row per variant, mean over seeds, best test accuracy first (saved view '{view.VIEW_NAME}'):"
    )
    return Landing(view.experiment_url(base, exp_id, key), lines)


def serve(uri: str, host: str, port: int, found: Landing, open_browser: bool) -> int:
    base = server.base_url(host, port)
    print(f"MLflow UI for {redact_uri(uri)} at {base}", flush=True)
    for line in found.lines:
        print("  " + line, flush=True)
    print(f"  {found.url}", flush=True)
    print("press Ctrl-C to stop", flush=True)
    return server.serve_process(
        server_command(host, port),
        env=server_env(uri),
        on_start=lambda alive: server.announce_when_up(found.url, f"{base}/health", alive, open_browser),
    )
