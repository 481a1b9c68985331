"""A results folder can be moved or copied: the default store's artifact locations follow the folder
the store is opened in (bench/tracking/mlflow_store.py ``relocate_artifacts``), so ``bench report``
on a copy reads and writes the copy, never the original folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench.cli import main
from tests.helpers import fresh_store
from tests.recipes import tiny_recipe, write_recipe


def test_a_copied_results_folder_reports_into_itself(tmp_path, tiny_image_folder, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the default store: <results>/mlflow.db
    first, copy = tmp_path / "A", tmp_path / "B"
    recipe = write_recipe(
        tmp_path / "tiny.yaml", tiny_recipe(tiny_image_folder, **{"train.epochs": 1, "train.device": "cpu"})
    )
    fresh_store(first / "mlflow.db")
    assert main(["run", str(recipe), "--results-dir", str(first)]) == 0
    shutil.copytree(first, copy)
    shutil.rmtree(first)

    # a command of its own, as a user runs it (this process's MLflow caches the runs' old locations)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    done = subprocess.run([sys.executable, "-m", "bench.cli", "report", str(recipe), "--results-dir", str(copy)],
                          env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert not first.exists()  # nothing written into (or recreated at) the original folder
    assert (copy / "tiny" / "report.md").is_file()
    assert list((copy / "mlartifacts").rglob("report/*.csv"))  # the report's artifacts went into the copy
    client = MlflowClient(tracking_uri=f"sqlite:///{copy / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny")
    assert exp.artifact_location.startswith(copy.resolve().as_uri() + "/mlartifacts/")
    for run in client.search_runs([exp.experiment_id]):
        assert run.info.artifact_uri.startswith(exp.artifact_location + "/")
        assert client.list_artifacts(run.info.run_id)  # config, recipe, runs.csv: readable from the copy
