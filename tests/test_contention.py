"""The contention monitor: real busy-loop processes competing with a real (tiny) training run are
seen as other processes' share of the CPU, and the run is marked speed-contaminated."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from bench.recipe.load import load_recipe
from bench.tracking.mlflow_store import ensure_experiment
from tests.recipes import tiny_recipe, write_recipe

SHARE, CONTAMINATED = "contention/cpu_other_share", "contention/speed_contaminated"


def test_run_values_weight_epochs_by_training_time_and_apply_the_threshold():
    from bench.engine.contention import summarize

    history = [{"time/train_epoch_s": 3.0, SHARE: 0.1, "contention/loadavg": 1.0},
               {"time/train_epoch_s": 1.0, SHARE: 0.9, "contention/loadavg": 3.0}]  # fmt: skip
    out = summarize(history, threshold=0.25)
    assert out[SHARE] == pytest.approx(0.3) and out["contention/loadavg"] == 2.0
    assert out[CONTAMINATED] == 1.0 and summarize(history, threshold=0.5)[CONTAMINATED] == 0.0
    assert summarize([{"time/train_epoch_s": 1.0}]) == {}  # no readings (not Linux): no verdict


def background_share(seconds: float = 1.0) -> float:
    """Other processes' share of this machine's cores while this process sleeps."""
    from bench.engine.contention import ContentionMonitor

    monitor = ContentionMonitor()
    monitor.start()
    time.sleep(seconds)
    return monitor.stop()[SHARE]


@pytest.mark.slow
def test_busy_loops_beside_a_training_run_mark_it_contaminated(tmp_path, tiny_image_folder):
    from mlflow.tracking import MlflowClient

    from bench.engine.loop import run_variant
    from bench.execution.recorded import Recording, run_recorded

    recipe = tiny_recipe(
        tiny_image_folder, name="busy", **{"train.epochs": 2, "data.batch_size": 16, "data.subset": 96}
    )
    variant = load_recipe(write_recipe(tmp_path / "busy.yaml", recipe)).variants[0]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    rec = Recording(client, ensure_experiment(client, uri, "busy"), "busy")

    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        time.sleep(0.5)  # both spinning before the timed steps start
        run_id, busy = run_recorded(rec, variant, run_dir=tmp_path / "busy")
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert busy.status == "finished", busy.reason
    assert busy.metrics[SHARE] > 0.4 and busy.metrics[CONTAMINATED] == 1.0
    assert all(SHARE in r and "contention/loadavg" in r for r in busy.history)  # per epoch too
    run = client.get_run(run_id)
    assert run.data.tags["bench.speed_contaminated"] == "true" and run.data.metrics[CONTAMINATED] == 1.0

    before = background_share()  # this machine may be shared: other users' load is real contention
    quiet = run_variant(variant, run_dir=tmp_path / "quiet")
    after = background_share()
    assert quiet.metrics[SHARE] < busy.metrics[SHARE]
    if max(before, after) < 0.1:  # nobody else was busy: the run saw (almost) no one either
        assert quiet.metrics[SHARE] < 0.25 and quiet.metrics[CONTAMINATED] == 0.0
