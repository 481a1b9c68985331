"""``--executor ray``: a study's variants as Ray tasks on a real local Ray (logical GPUs declared on
this CPU machine), a real two-node Ray cluster, and a real MLflow server on PostgreSQL. The same
records as the local executor, each task on its own GPU, a SIGKILLed worker retried and resumed
and recorded once, and stores a cluster cannot share refused up front."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.errors import ClusterError
from bench.execution.cluster import RayOptions, check_reachable, filesystem_type
from tests.helpers import FAULTS, all_runs, children, fresh_store, parents, steps, table
from tests.helpers import bench_in_process as bench
from tests.recipes import tiny_recipe, write_recipe

REPO = Path(__file__).resolve().parent.parent
RAY_FLAGS = ["--executor", "ray", "--cpus-per-variant", "0.5"]  # 4 tasks at once on 2 cores


def matrix_recipe(tmp_path: Path, data: Path, epochs: int = 2) -> Path:
    """Four runs: two learning rates x two seeds, on the CPU."""
    recipe = tiny_recipe(data, **{"train.device": "cpu", "train.epochs": epochs})
    recipe["matrix"] = {"train.optimizer.lr": [0.05, 0.02]}
    recipe["seeds"] = [0, 1]
    return write_recipe(tmp_path / "tiny.yaml", recipe)


def by_variant(runs) -> dict:
    return {r.data.tags["bench.variant"]: r for r in children(runs)}


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module: 2 CPUs and 4 logical GPUs (CUDA_VISIBLE_DEVICES set per task)."""
    ray = pytest.importorskip("ray")
    with pytest.MonkeyPatch.context() as env:  # Ray's workers start with the fault points (helpers.FAULTS)
        env.setenv("PYTHONPATH", os.pathsep.join(filter(None, (str(FAULTS), os.environ.get("PYTHONPATH")))))
        ray.init(address="local", num_cpus=2, num_gpus=4, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


# --- fast: flags and the cluster storage check -------------------------------------------------------


def test_ray_flags_need_executor_ray(tmp_path, tiny_image_folder, capsys):
    recipe = write_recipe(tmp_path / "tiny.yaml", tiny_recipe(tiny_image_folder))
    assert main(["run", str(recipe), "--address", "auto", "--results-dir", str(tmp_path)]) == 2
    assert "--address: only with --executor ray" in capsys.readouterr().err
    assert not (tmp_path / "tiny").exists()


def test_cluster_refuses_stores_other_nodes_cannot_reach(tmp_path):
    local = {"the results folder": tmp_path}
    with pytest.raises(ClusterError) as err:
        check_reachable(3, f"sqlite:///{tmp_path}/mlflow.db", local, RayOptions(address="auto"))
    text = str(err.value)
    assert "3 nodes" in text and "sqlite:///" in text and "tracking server" in text
    assert f"the results folder {tmp_path.resolve()} is on a local file system" in text
    assert "--allow-local-store" in text
    # one node, or the user vouching for the store: allowed
    check_reachable(1, "sqlite:///x.db", local, RayOptions())
    check_reachable(3, "sqlite:///x.db", local, RayOptions(allow_local_store=True))


def test_a_ray_cancel_waits_while_a_runs_final_status_is_written():
    """Ray cancels with ``_thread.interrupt_main()``; inside ``deferred_signals`` it must wait."""
    import _thread

    from bench.execution.ray_executor import cancellable
    from bench.util.signals import deferred_signals

    steps_done = []
    with pytest.raises(KeyboardInterrupt), cancellable():
        with deferred_signals():
            _thread.interrupt_main()
            for _ in range(1000):  # bytecode boundaries: an unheld interrupt would land here
                steps_done.append(1)
            steps_done.append("closed")
        time.sleep(1)  # the held SIGINT is delivered once the mask is lifted
        steps_done.append("after")
    assert steps_done[-1] == "closed"


def test_filesystem_type_reads_the_mount_table():
    if not Path("/proc/mounts").exists():
        pytest.skip("no /proc/mounts")
    assert filesystem_type(Path("/proc/self/status")) == "proc"


# --- a local Ray: same records as the local executor -------------------------------------------------


@pytest.mark.slow
@pytest.mark.ray
def test_ray_runs_every_variant_once_like_the_local_executor(tmp_path, tiny_image_folder, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the same arithmetic in both executors' processes
    monkeypatch.setenv("BENCH_RAY_LOGICAL_GPUS", "4")  # the local Ray this command starts declares 4 GPUs
    monkeypatch.setenv("MLFLOW_RUN_ID", "0" * 32)  # a driver inside an MLflow run: the tasks drop it
    recipe = matrix_recipe(tmp_path, tiny_image_folder)
    local_dir, ray_dir = tmp_path / "local", tmp_path / "ray"
    assert bench(local_dir, recipe) == 0
    assert bench(ray_dir, recipe, *RAY_FLAGS) == 0

    local, remote = all_runs(local_dir), all_runs(ray_dir)
    assert len(parents(remote)) == 1 and len(children(remote)) == 4  # every variant once
    parent = parents(remote)[0]
    assert parent.info.status == "FINISHED" and parent.data.tags["bench.variants"] == "4"
    local_runs, ray_runs = by_variant(local), by_variant(remote)
    assert sorted(ray_runs) == sorted(local_runs)
    for name, run in ray_runs.items():
        assert run.info.status == "FINISHED" and run.data.tags["bench.status"] == "finished"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["bench.gpu"].endswith(": logical (no CUDA device)")
        for key in ("test/acc", "train/loss"):  # identical to the local executor, same seeds
            assert run.data.metrics[key] == local_runs[name].data.metrics[key], (name, key)
        assert run.data.metrics.keys() == local_runs[name].data.metrics.keys()
        assert run.data.params == local_runs[name].data.params
        assert steps(ray_dir, run.info.run_id) == [0, 1]
    frame = table(ray_dir)  # runs.csv agrees with MLflow
    assert set(frame["status"]) == {"finished"}
    assert dict(zip(frame["variant"], frame["mlflow_run_id"])) == {
        v: r.info.run_id for v, r in ray_runs.items()
    }


@pytest.mark.slow
@pytest.mark.ray
def test_each_task_sees_its_own_gpu_and_finished_variants_are_skipped(
    tmp_path, tiny_image_folder, local_ray, monkeypatch
):
    # Four workers writing to one SQLite store at once: no "database is locked", no metric lost.
    recipe = matrix_recipe(tmp_path, tiny_image_folder, epochs=3)
    assert bench(tmp_path, recipe, *RAY_FLAGS) == 0
    runs = children(all_runs(tmp_path))
    assert len(runs) == 4
    for run in runs:
        for key in ("train/loss", "test/acc", "train/lr", "throughput/train_img_s"):
            assert steps(tmp_path, run.info.run_id, key) == [0, 1, 2], (run.info.run_name, key)
    seen = {}
    for run in runs:
        tags = run.data.tags
        visible = tags["bench.cuda_visible_devices"]  # what the task's process saw
        assert visible in {"0", "1", "2", "3"} and tags["bench.gpu"].startswith(f"{visible}: ")
        seen[run.info.run_id] = (visible, run.info.start_time, run.info.end_time)
    overlapping = [
        (a, b)
        for a in seen.values()
        for b in seen.values()
        if a is not b and a[1] < b[2] and b[1] < a[2]  # in flight at the same time
    ]
    assert overlapping, "no two tasks ran at once"
    assert all(a[0] != b[0] for a, b in overlapping)  # ... and never on the same GPU
    # the same command again: everything finished, nothing trains or is recorded twice
    assert bench(tmp_path, recipe, *RAY_FLAGS) == 0
    again = all_runs(tmp_path)
    assert len(children(again)) == 4 and len(parents(again)) == 2


@pytest.mark.slow
@pytest.mark.ray
def test_sigkilled_worker_is_retried_resumed_and_recorded_once(
    tmp_path, tiny_image_folder, local_ray, monkeypatch
):
    once = tmp_path / "killed-once"
    monkeypatch.setenv("BENCH_FAULT", "run.after_checkpoint:kill")  # SIGKILL after epoch 1's checkpoint
    monkeypatch.setenv("BENCH_FAULT_ONCE", str(once))  # only the first task to get there; its retry runs on
    recipe = matrix_recipe(tmp_path, tiny_image_folder, epochs=3)
    assert bench(tmp_path, recipe, *RAY_FLAGS) == 0
    assert once.exists()  # a worker really was killed
    runs = children(all_runs(tmp_path))
    assert len(runs) == 4  # the killed variant was not recorded twice
    # Ray's own retry resumed the run its dead attempt left RUNNING: a second attempt of the same run
    assert sorted(r.data.tags["bench.attempt"] for r in runs) == ["1", "1", "1", "2"]
    for run in runs:
        assert run.info.status == "FINISHED" and run.data.tags["bench.status"] == "finished"
        assert steps(tmp_path, run.info.run_id) == [0, 1, 2]  # no epoch lost or logged twice
        assert steps(tmp_path, run.info.run_id, "test/acc") == [0, 1, 2]
    assert set(table(tmp_path)["status"]) == {"finished"}


# --- many machines: a two-node cluster, an MLflow server on PostgreSQL --------------------------------


@pytest.mark.slow
@pytest.mark.ray
def test_two_node_cluster_refuses_sqlite_then_spreads_the_variants(tmp_path, tiny_image_folder):
    pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        recipe = matrix_recipe(tmp_path, tiny_image_folder, epochs=1)
        cmd = [sys.executable, "-m", "bench.cli", "run", str(recipe), "--results-dir", str(tmp_path / "res"),
               "--executor", "ray", "--address", cluster.address]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        refused = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert refused.returncode == 2, refused.stderr[-2000:]
        assert "the Ray cluster has 2 nodes" in refused.stderr and "tracking server" in refused.stderr
        assert not list((tmp_path / "res").glob("*/runs"))  # nothing trained
        done = subprocess.run(
            cmd + ["--allow-local-store"], capture_output=True, text=True, env=env, timeout=300
        )
        assert done.returncode == 0, done.stderr[-3000:]
    finally:
        cluster.shutdown()
    runs = children(all_runs(tmp_path / "res", "tiny"))
    assert len(runs) == 4 and {r.data.tags["bench.status"] for r in runs} == {"finished"}
    assert len({r.data.tags["bench.ray_node"] for r in runs}) == 2  # both nodes trained
    assert {r.data.tags["bench.gpu"] for r in runs} == {"cpu"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    """A real ``mlflow server`` on a fresh PostgreSQL database, serving artifacts from a folder."""
    url = os.environ.get("BENCH_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("BENCH_TEST_POSTGRES_URL is not set (scripts/ci_postgres.sh provisions one)")
    import psycopg2

    dsn = url.replace("postgresql+psycopg2://", "postgresql://")
    db = f"mlflow_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(dsn)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {db}")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", url.rsplit("/", 1)[0] + f"/{db}",
         "--artifacts-destination", (tmp_path / "artifacts").as_uri(), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "2"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "server.log", "w"),
    )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if urllib.request.urlopen(f"{uri}/health", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
        yield uri
    finally:
        server.terminate()
        server.wait(timeout=30)
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        admin.close()


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.postgres
def test_mlflow_server_on_postgres(tmp_path, tiny_image_folder, local_ray, mlflow_server):
    from mlflow.tracking import MlflowClient

    recipe = matrix_recipe(tmp_path, tiny_image_folder, epochs=2)
    code = main(["run", str(recipe), "--results-dir", str(tmp_path / "res"), "--tracking-uri", mlflow_server,
                 *RAY_FLAGS])  # fmt: skip
    assert code == 0
    client = MlflowClient(tracking_uri=mlflow_server)
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    assert len(parents(runs)) == 1 and len(children(runs)) == 4
    parent_id = parents(runs)[0].info.run_id
    for run in children(runs):
        assert (
            run.data.tags["mlflow.parentRunId"] == parent_id and run.data.tags["bench.status"] == "finished"
        )
        assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [0, 1]
        assert "config.yaml" in {a.path for a in client.list_artifacts(run.info.run_id)}
    assert list((tmp_path / "artifacts").rglob("config.yaml"))  # artifacts went through the server
    frame = pd.read_csv(tmp_path / "res" / "tiny" / "runs.csv")  # runs.csv from the server's records
    assert set(frame["status"]) == {"finished"}
    assert set(frame["mlflow_run_id"]) == {r.info.run_id for r in children(runs)}


@pytest.mark.slow
@pytest.mark.ray
def test_tune_workers_as_ray_tasks_keep_the_trial_count(tmp_path, tiny_image_folder, local_ray):
    from tests.helpers import assert_trial_numbers, tune_recipe

    # no re-check (9 more runs per call): the trial count is under test, test_tune re-checks
    tune = {
        "n_trials": 5,
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
        "recheck_top": 0,
    }
    path = tune_recipe(tmp_path, tiny_image_folder, tune=tune, **{"data.val_size": 32, "train.epochs": 1})
    args = ["tune", str(path), "--workers", "2", "--results-dir", str(tmp_path / "res"),
            "--tracking-uri", fresh_store(tmp_path / "mlflow.db"), "--executor", "ray", "--cpus-per-worker", "0.5"]  # fmt: skip
    assert main(args) == 0
    trials = pd.read_csv(tmp_path / "res" / "tinytune" / "trials.csv")
    assert_trial_numbers(trials["number"], n_trials=5)
    assert set(trials["state"]) == {"COMPLETE"}
    assert trials["worker"].nunique() == 2  # both Ray tasks ran trials
    assert main(args + ["--n-trials", "6"]) == 0  # the same command with a larger budget continues
    more = pd.read_csv(tmp_path / "res" / "tinytune" / "trials.csv")["number"]
    assert_trial_numbers(more, n_trials=6)
