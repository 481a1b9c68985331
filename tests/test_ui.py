"""``bench ui``: the MLflow UI comes up on 127.0.0.1 and serves the recipe's experiment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from bench.commands.ui import free_port
from bench.tracking import mlflow_store as store
from tests.recipes import tiny_recipe, write_recipe

pytestmark = pytest.mark.slow


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status, resp.read().decode()


def test_ui_serves_the_experiment(tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", tiny_recipe(tmp_path / "data", name="uitest"))
    results = tmp_path / "results"
    uri = store.default_tracking_uri(results)
    client = store.open_store(uri)
    store.ensure_experiment(client, uri, "uitest")
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": ""}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.cli", "ui", str(recipe), "--results-dir", str(results), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline, body = time.monotonic() + 120, None
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read()
            try:
                status, body = _get(f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=uitest")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        assert body is not None, "the MLflow UI did not come up within 120 s"
        assert status == 200 and json.loads(body)["experiment"]["name"] == "uitest"
        status, page = _get(base + "/")
        assert status == 200 and "<html" in page.lower()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # bench ui and the server it started
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    out = proc.stdout.read()
    assert f"at {base}" in out
