"""Faults caused for real on real ``bench run`` processes (issues 10, 22): an owner killed (under
another hostname) and the same command resumed at once, two commands on one recipe, kills in
the window after training, a lost or moved tracking store, store and file errors outside
training, a variant that kills its own process, a live ``bench tune`` run beside a stale
``bench run``, a label's weights taken by another config, a kill right after a run's creation,
and a driver SIGKILLed alone. Each fault is placed by a named fault point
(tests/faultinject/faultpoints.py): no sleeps, no polling races. Each test checks that nothing was lost, nothing ran twice and statuses are true.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from bench.engine import checkpoint as ckpt
from tests import procs
from tests.helpers import (
    REPO,
    all_runs,
    bench_args,
    bench_env,
    children,
    client_for,
    fault_log,
    kill_group,
    parents,
    reached,
    run_bench,
    start_bench,
    steps,
    table,
)
from tests.recipes import tiny_recipe, write_recipe

pytestmark = pytest.mark.slow
EPOCHS = 3
WEIGHTS = "results/tiny/weights/seed=0.pt"


def recipe_for(tmp_path: Path, data: Path, **dotted) -> Path:
    return write_recipe(
        tmp_path / "tiny.yaml", tiny_recipe(data, **{"train.device": "cpu", "train.epochs": EPOCHS, **dotted})
    )


def variant_ids(recipe: Path) -> dict[str, str]:
    from bench.recipe.load import load_recipe

    return {v.name: v.variant_id for v in load_recipe(recipe).variants}


def trained_epochs(tmp_path: Path) -> list[str]:
    """The epochs that ran (``run.epoch_end.N:log``), as ``N@variant_id``."""
    return [line.split()[0].removeprefix("run.epoch_end.") + "@" + line.split()[1] for line in fault_log(tmp_path)
            if line.startswith("run.epoch_end.")]  # fmt: skip


EPOCH_LOG = ",".join(f"run.epoch_end.{e}:log" for e in range(EPOCHS))


def assert_csv_agrees_with_mlflow(tmp_path: Path) -> None:
    rows = table(tmp_path).set_index("mlflow_run_id")
    for run in children(all_runs(tmp_path)):
        if run.info.run_id not in rows.index:
            continue  # an older run of a run key whose latest run is listed
        row = rows.loc[run.info.run_id]
        assert row["status"] == run.data.tags["bench.status"]
        for key, value in run.data.metrics.items():
            assert row[key] == pytest.approx(value, rel=1e-12), key


@pytest.fixture(scope="module")
def straight(tmp_path_factory, tiny_image_folder) -> dict:
    """An uninterrupted run of the recipe the kill tests use: its runs.csv row and weights."""
    tmp = tmp_path_factory.mktemp("straight")
    rc, err = run_bench(tmp, recipe_for(tmp, tiny_image_folder))
    assert rc == 0, err
    return {"row": table(tmp).iloc[0], "weights": torch.load(tmp / WEIGHTS, weights_only=True)}


def assert_same_result(tmp_path: Path, straight: dict) -> None:
    row = table(tmp_path).iloc[0]
    assert row["status"] == "finished"
    for key in ("test/acc", "test/acc_oracle", "train/loss", "params/total"):
        assert row[key] == straight["row"][key], key
    assert math.isfinite(row["throughput/train_img_s"]) and row["throughput/train_img_s"] > 0
    assert math.isfinite(row["throughput/eval_img_s"])
    got = torch.load(tmp_path / WEIGHTS, weights_only=True)
    assert got.keys() == straight["weights"].keys()
    assert all(torch.equal(got[k], straight["weights"][k]) for k in got)


# --- 1. a dead owner: its lock died with it, so the same command resumes at once, on any host ----------


def test_dead_owner_on_another_host_resumes_at_once(tmp_path, tiny_image_folder):
    """The container died with its processes under another hostname: the recipe's lock died with
    them (a file lock, not a lease with a hostname), so the rerun here owns the recipe at once."""
    if subprocess.run(["unshare", "-u", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -u is not permitted here")
    recipe = recipe_for(tmp_path, tiny_image_folder)
    other_host = ("unshare", "-u", "sh", "-c", 'hostname bench-old-container && exec "$@"', "sh")
    proc = start_bench(tmp_path, recipe, fault="run.checkpoint.1:block", prefix=other_host)
    reached(tmp_path, proc)
    kill_group(proc)  # the container dies with its processes
    [stale] = children(all_runs(tmp_path))
    assert stale.info.status == "RUNNING" and stale.data.tags["bench.host"] == "bench-old-container"

    rc, err = run_bench(tmp_path, recipe, fault=EPOCH_LOG)  # at once, on this host
    assert rc == 0, err
    assert (
        "closed 2 MLflow run(s) that a killed bench run of this recipe left running" in err
    )  # child, parent
    assert "resuming seed=0 from its last checkpoint" in err
    [vid] = variant_ids(recipe).values()
    assert trained_epochs(tmp_path) == [f"1@{vid}", f"2@{vid}"]  # epoch 0 came from the checkpoint
    [child] = children(all_runs(tmp_path))
    assert child.info.run_id == stale.info.run_id and child.info.status == "FINISHED"
    assert child.data.tags["bench.host"] == socket.gethostname()
    assert steps(tmp_path, child.info.run_id) == list(range(EPOCHS))
    assert sorted(p.info.status for p in parents(all_runs(tmp_path))) == ["FINISHED", "KILLED"]
    assert_csv_agrees_with_mlflow(tmp_path)


def test_sigkill_of_the_whole_command_then_the_same_command_resumes_at_once(tmp_path, tiny_image_folder):
    """Issue 22: after a SIGKILL of the whole command (OOM killer, node reboot) the same command run at
    once used to exit 4 "busy" until the dead owner's 90 s lease expired. Default settings here."""
    recipe = recipe_for(tmp_path, tiny_image_folder, matrix={"train.optimizer.lr": [0.05, 0.02]})
    ids = variant_ids(recipe)
    first = ids["lr=0.05,seed=0"]
    proc = start_bench(tmp_path, recipe, fault=f"run.checkpoint.1@{first}:block,{EPOCH_LOG}")
    reached(tmp_path, proc)  # epoch 0 of the first variant done and checkpointed, inside epoch 1
    kill_group(proc)

    assert_rerun_resumes_at_once(tmp_path, recipe, ids)


# --- 2. two commands on one recipe: the second exits 4 at once and changes nothing ---------------------


def store_snapshot(tmp_path: Path) -> list:
    """Every run of the store as (id, status, tags, metrics, params): what a command could change."""
    return sorted(
        (r.info.run_id, r.info.status, r.data.tags, r.data.metrics, r.data.params) for r in all_runs(tmp_path)
    )


def test_second_command_on_a_recipe_exits_4_at_once_and_changes_nothing(tmp_path, tiny_image_folder):
    lrs = [0.05, 0.04, 0.03]
    recipe = recipe_for(
        tmp_path, tiny_image_folder, **{"train.epochs": 1, "matrix": {"train.optimizer.lr": lrs}}
    )
    ids = variant_ids(recipe)
    second = ids["lr=0.04,seed=0"]
    owner = start_bench(tmp_path, recipe, fault=f"run.train_start:log,run.train_start@{second}:block")
    try:
        reached(tmp_path, owner)  # the first variant finished, the second is being trained
        before = store_snapshot(tmp_path)
        csv = (tmp_path / "results/tiny/runs.csv").read_bytes()
        t0 = time.monotonic()
        rc, err = run_bench(tmp_path, recipe, "--force", fault="run.train_start:log")  # --force too
        took = time.monotonic() - t0
        assert rc == 4, err
        assert "busy: recipe 'tiny' is being run by bench run pid" in err and "Traceback" not in err
        assert took < 60, took  # at once: no lease to wait for (it was 90 s)
        assert store_snapshot(tmp_path) == before  # no parent run, no tag, nothing closed
        assert (tmp_path / "results/tiny/runs.csv").read_bytes() == csv
        assert len(fault_log(tmp_path)) == 2  # the owner's two variant starts; none from the second command
    finally:
        (tmp_path / "release").touch()
    _, err = owner.communicate(timeout=600)
    assert owner.returncode == 0, err
    starts = [line.split()[1] for line in fault_log(tmp_path)]
    assert sorted(starts) == sorted(ids.values())  # each variant trained exactly once
    runs = all_runs(tmp_path)
    assert {(r.info.status, r.data.tags["bench.status"]) for r in children(runs)} == {
        ("FINISHED", "finished")
    }
    assert [p.info.status for p in parents(runs)] == ["FINISHED"]
    assert table(tmp_path)["status"].tolist() == ["finished"] * len(lrs)
    assert_csv_agrees_with_mlflow(tmp_path)
    assert not list((tmp_path / "results").rglob("*.tmp"))


# --- 3. a kill in the window after training -----------------------------------------------------------


@pytest.mark.parametrize(
    "point", ["run.close.after_metrics", "run.close.after_export", "run.close.before_status"]
)
def test_kill_while_closing_resumes_to_the_same_final_metrics(tmp_path, tiny_image_folder, straight, point):
    recipe = recipe_for(tmp_path, tiny_image_folder)
    rc, err = run_bench(tmp_path, recipe, fault=f"{point}:kill")  # the variant's process dies there
    assert rc == 1, err
    [row] = table(tmp_path).to_dict("records")
    assert (
        row["status"] == "failed" and "signal SIGKILL" in row["reason"] and "attempt 1 of 3" in row["reason"]
    )
    [killed] = children(all_runs(tmp_path))
    assert killed.info.status == "FAILED"
    [last] = (tmp_path / "results/tiny/runs").glob("*/last.ckpt")
    first_peak = ckpt.safe_load(last)["peak_mb"]

    rc, err = run_bench(tmp_path, recipe, fault=EPOCH_LOG)
    assert rc == 0, err
    assert trained_epochs(tmp_path) == []  # resumed after the last epoch: nothing trained twice
    assert_same_result(tmp_path, straight)
    [child] = children(all_runs(tmp_path))
    assert child.info.run_id == killed.info.run_id and child.info.status == "FINISHED"
    assert "bench.failed_epoch" not in child.data.tags
    assert child.data.metrics["memory/peak_rss_mb"] >= first_peak  # covers the killed process too
    for key in ("test/acc_oracle", "throughput/eval_img_s", "time/wall_s", "memory/peak_rss_mb"):
        assert steps(tmp_path, child.info.run_id, key) == [EPOCHS - 1], key  # each logged once
    assert steps(tmp_path, child.info.run_id, "throughput/train_img_s") == list(range(EPOCHS))
    assert_csv_agrees_with_mlflow(tmp_path)


# --- 5. a lost, new or moved tracking store --------------------------------------------------------------


def test_lost_store_never_deletes_checkpoints_and_resumes_into_a_new_run(
    tmp_path, tiny_image_folder, straight
):
    recipe = recipe_for(tmp_path, tiny_image_folder)
    proc = start_bench(tmp_path, recipe, fault="run.checkpoint.1:block")
    reached(tmp_path, proc)
    kill_group(proc)
    [old] = children(all_runs(tmp_path))
    new_store = tmp_path / "new"  # the store is gone (moved, lost): a new, empty one
    rc, err = run_bench(
        tmp_path, recipe, "--tracking-uri", f"sqlite:///{new_store / 'mlflow.db'}", fault=EPOCH_LOG
    )
    assert rc == 0, err
    assert "resuming seed=0 from its last checkpoint" in err
    [vid] = variant_ids(recipe).values()
    assert trained_epochs(tmp_path) == [f"1@{vid}", f"2@{vid}"]  # epoch 0 was not trained again
    [new] = children(all_runs(new_store))
    assert new.info.run_id != old.info.run_id and new.info.status == "FINISHED"
    for key in ("train/loss", "test/acc"):  # epoch 0's metrics re-logged from the checkpoint's history
        assert steps(new_store, new.info.run_id, key) == list(range(EPOCHS))
    assert_same_result(tmp_path, straight)

    newer = tmp_path / "newer"  # lost again, after the variant finished
    rc, err = run_bench(
        tmp_path, recipe, "--tracking-uri", f"sqlite:///{newer / 'mlflow.db'}", fault=EPOCH_LOG
    )
    assert rc == 0, err
    assert len(trained_epochs(tmp_path)) == 2  # nothing trained: finished from the final checkpoint
    [again] = children(all_runs(newer))
    assert again.data.tags["bench.status"] == "finished"
    assert steps(newer, again.info.run_id) == list(range(EPOCHS))
    assert_same_result(tmp_path, straight)


# --- 6. errors outside training ----------------------------------------------------------------------------


def test_failed_export_and_unwritable_runs_csv_keep_the_matrix_going(tmp_path, tiny_image_folder):
    recipe = recipe_for(
        tmp_path, tiny_image_folder, **{"train.epochs": 1, "matrix": {"train.optimizer.lr": [0.05, 0.02]}}
    )
    blocked = tmp_path / "results/tiny/weights/lr=0.05,seed=0.pt"
    blocked.mkdir(parents=True)  # a folder where the weights file must go
    (tmp_path / "results/tiny/runs.csv").mkdir()  # and one where runs.csv must go
    rc, err = run_bench(tmp_path, recipe)
    assert rc == 1, err
    assert "Traceback" not in err
    assert f"cannot write {tmp_path / 'results/tiny/runs.csv'}" in err
    by_lr = {r.data.tags["axis.lr"]: r for r in children(all_runs(tmp_path))}
    failed, finished = by_lr["0.05"], by_lr["0.02"]
    assert (failed.info.status, failed.data.tags["bench.status"]) == ("FAILED", "failed")
    assert "cannot export the weights: IsADirectoryError" in failed.data.tags["bench.reason"]
    assert (finished.info.status, finished.data.tags["bench.status"]) == ("FINISHED", "finished")

    blocked.rmdir(), (tmp_path / "results/tiny/runs.csv").rmdir()
    rc, err = run_bench(tmp_path, recipe, fault="run.epoch_end.0:log")
    assert rc == 0, err
    assert fault_log(tmp_path) == []  # resumed from the final checkpoint and exported: nothing retrained
    assert blocked.is_file()
    assert table(tmp_path)["status"].tolist() == ["finished", "finished"]
    assert_csv_agrees_with_mlflow(tmp_path)


def test_partly_corrupt_store_fails_each_variant_clearly_and_exits_3(tmp_path, tiny_image_folder):
    recipe = recipe_for(
        tmp_path, tiny_image_folder, **{"train.epochs": 1, "matrix": {"train.optimizer.lr": [0.05, 0.02]}}
    )
    assert run_bench(tmp_path, recipe, "train.optimizer.lr=0.1")[0] == 0  # creates the store
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        db.execute("DROP TABLE metrics")  # a damaged store: runs can be created, metrics not logged
    rc, err = run_bench(tmp_path, recipe, fault="run.train_start:log")
    assert rc == 3, err
    assert "Traceback" not in err
    assert err.count("the tracking store failed while recording the run") == 2 and "OperationalError) " in err
    assert len(fault_log(tmp_path)) == 2  # the matrix went on after the first variant's store error


def test_damaged_or_locked_store_exits_3_before_training(tmp_path, tiny_image_folder):
    recipe = recipe_for(tmp_path, tiny_image_folder, **{"train.epochs": 1})
    db = tmp_path / "mlflow.db"
    locker = sqlite3.connect(tmp_path / "mlflow.db", isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # another process holds the SQLite file locked (beyond 20 s)
    try:
        rc, err = run_bench(tmp_path, recipe, fault="run.train_start:log")
    finally:
        locker.execute("ROLLBACK"), locker.close()
    assert rc == 3, err
    assert "database is locked" in err and "use a database server" in err and "Traceback" not in err
    assert fault_log(tmp_path) == []

    assert run_bench(tmp_path, recipe)[0] == 0
    data = bytearray(db.read_bytes())
    data[4096:] = b"\x5a" * (len(data) - 4096)  # garbage over every page after the first (the schema)
    db.write_bytes(bytes(data))
    rc, err = run_bench(tmp_path, recipe, "train.optimizer.lr=0.01", fault="run.train_start:log")
    assert rc == 3, err
    assert f"sqlite:///{db}" in err and "Traceback" not in err and fault_log(tmp_path) == []


# --- 7. a variant that kills its own process ----------------------------------------------------------------


def test_crashing_variant_is_recorded_resumed_and_given_up(tmp_path, tiny_image_folder):
    recipe = recipe_for(tmp_path, tiny_image_folder, matrix={"train.optimizer.lr": [0.05, 0.02]})
    vid = variant_ids(recipe)["lr=0.05,seed=0"]
    rc, err = run_bench(tmp_path, recipe, "--max-attempts", "2", fault=f"run.checkpoint.1@{vid}:kill")
    assert rc == 1, err
    rows = table(tmp_path).set_index("variant")
    assert rows.loc["lr=0.02,seed=0", "status"] == "finished"  # the matrix went on
    assert rows.loc["lr=0.05,seed=0", "status"] == "failed"
    assert "died (signal SIGKILL); attempt 1 of 2" in rows.loc["lr=0.05,seed=0", "reason"]

    rc, err = run_bench(
        tmp_path, recipe, "--max-attempts", "2", fault=f"run.checkpoint.2@{vid}:kill,{EPOCH_LOG}"
    )
    assert rc == 1, err
    assert "resuming lr=0.05,seed=0 from its last checkpoint" in err
    assert trained_epochs(tmp_path) == [f"1@{vid}"]  # resumed after epoch 0; the other one not retrained
    reason = table(tmp_path).set_index("variant").loc["lr=0.05,seed=0", "reason"]
    assert "died (signal SIGKILL) 2 times: given up" in reason

    rc, err = run_bench(tmp_path, recipe, "--max-attempts", "2", fault=EPOCH_LOG)
    assert rc == 1, err
    assert len(trained_epochs(tmp_path)) == 1  # given up: not tried again
    assert "gave up after 2 crashed attempts" in err  # said now; runs.csv keeps the recorded reason
    assert "given up" in table(tmp_path).set_index("variant").loc["lr=0.05,seed=0", "reason"]

    rc, err = run_bench(tmp_path, recipe, "--max-attempts", "3", fault=EPOCH_LOG)  # a user allows one more
    assert rc == 0, err
    assert trained_epochs(tmp_path)[1:] == [f"2@{vid}"]
    runs = children(all_runs(tmp_path))
    assert len(runs) == 2 and {r.data.tags["bench.status"] for r in runs} == {"finished"}
    assert_csv_agrees_with_mlflow(tmp_path)


# --- 8. closing a dead owner's runs leaves a live ``bench tune`` alone --------------------------------------------


def test_closing_dead_runs_leaves_a_live_tune_run_alone(tmp_path, tiny_image_folder):
    from tests.helpers import tune_recipe

    tune = tune_recipe(tmp_path, tiny_image_folder, tune={"n_trials": 1, "sampler": {"name": "random", "seed": 0},
                       "pruner": {"name": "none"}, "recheck_top": 0}, **{"data.val_size": 32, "train.epochs": 1, "train.device": "cpu"})  # fmt: skip
    args = bench_args(tmp_path, tune)[:-2]  # without --order variant: a bench run option
    tuner = procs.popen(
        [*args[:3], "tune", *args[4:]], cwd=REPO,
        env=bench_env(tmp_path, "tune.trial_run_opened:block"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        reached(tmp_path, tuner)  # the trial's MLflow run is RUNNING (Optuna's heartbeat guards it)
        [trial] = [r for r in all_runs(tmp_path, "tinytune") if r.data.tags.get("bench.kind") == "trial"]
        assert trial.info.status == "RUNNING"
        recipe = recipe_for(
            tmp_path, tiny_image_folder, **{"train.epochs": 1, "tracking.experiment": "tinytune"}
        )
        rc, err = run_bench(tmp_path, recipe)  # closes the RUNNING runs of its own recipe only
        assert rc == 0, err
        assert client_for(tmp_path).get_run(trial.info.run_id).info.status == "RUNNING"  # left alone
    finally:
        (tmp_path / "release").touch()
    _, err = tuner.communicate(timeout=300)
    assert tuner.returncode == 0, err[-3000:]
    trial = client_for(tmp_path).get_run(trial.info.run_id)
    assert (trial.info.status, trial.data.tags["bench.status"]) == ("FINISHED", "finished")


# --- 9. one label, two configs: the exported weights are the run key's own --------------------------------


def same_weights(a: Path, b: Path) -> bool:
    x, y = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_finished_variant_takes_its_label_weights_back_from_another_config(tmp_path, tiny_image_folder):
    """``weights/seed=0.pt`` is named by the label, which an override keeps: a finished variant
    rerun after another config of the same label must not say finished over that config's model
    (a downstream recipe loading the label path would fine-tune from the wrong weights)."""
    recipe = recipe_for(tmp_path, tiny_image_folder, **{"train.epochs": 1})
    weights, runs = tmp_path / WEIGHTS, tmp_path / "results/tiny/runs"
    rc, err = run_bench(tmp_path, recipe)
    assert rc == 0, err
    own = table(tmp_path).iloc[0]["run_key"]
    rc, err = run_bench(tmp_path, recipe, "train.optimizer.lr=0.01")  # same label, another run key
    assert rc == 0, err
    other = table(tmp_path).iloc[0]["run_key"]
    assert other != own and table(tmp_path).iloc[0]["variant"] == "seed=0"
    assert same_weights(weights, runs / other / "model.pt")  # the label follows the latest request
    assert not same_weights(runs / own / "model.pt", runs / other / "model.pt")

    rc, err = run_bench(tmp_path, recipe, fault=EPOCH_LOG)  # the original again: nothing to train
    assert rc == 0, err
    assert "seed=0: already finished, skipped; its weights exported again" in err
    assert trained_epochs(tmp_path) == [] and table(tmp_path).iloc[0]["run_key"] == own
    assert same_weights(weights, runs / own / "model.pt")
    assert json.loads(Path(f"{weights}.json").read_text())["run_key"] == own
    assert_csv_agrees_with_mlflow(tmp_path)

    # the other config's export killed after its file was copied, before its key was written
    rc, err = run_bench(tmp_path, recipe, "train.optimizer.lr=0.01", fault="run.export.copied:kill")
    assert rc == 1, err
    assert same_weights(weights, runs / other / "model.pt")
    assert "run_key" not in json.loads(Path(f"{weights}.json").read_text())  # claimed by no run key
    rc, err = run_bench(tmp_path, recipe, fault=EPOCH_LOG)
    assert rc == 0, err
    assert trained_epochs(tmp_path) == [] and same_weights(weights, runs / own / "model.pt")


# --- 10. a kill right after the run was created ---------------------------------------------------------


def test_run_killed_right_after_creation_gets_its_params_and_config_on_rerun(tmp_path, tiny_image_folder):
    from bench.recipe.dotted import flatten
    from bench.recipe.load import load_recipe
    from bench.tracking.mlflow_store import param_items

    recipe = recipe_for(tmp_path, tiny_image_folder, **{"train.epochs": 1})
    rc, err = run_bench(tmp_path, recipe, fault="run.open.created:kill")  # before its params and config.yaml
    assert rc == 1, err
    [killed] = children(all_runs(tmp_path))
    assert killed.data.params == {} and killed.data.tags["bench.status"] == "failed"

    rc, err = run_bench(tmp_path, recipe)
    assert rc == 0, err
    [run] = children(all_runs(tmp_path))
    assert run.info.run_id == killed.info.run_id
    assert (run.info.status, run.data.tags["bench.status"]) == ("FINISHED", "finished")
    [variant] = load_recipe(recipe).variants
    expected = {p.key: p.value for p in param_items({**flatten(variant.config), "seed": variant.seed})}
    assert run.data.params == expected
    config = client_for(tmp_path).download_artifacts(run.info.run_id, "config.yaml", str(tmp_path))
    assert yaml.safe_load(Path(config).read_text()) == variant.config


# --- 11. the driver SIGKILLed alone: its variant's process dies with it ---------------------------------


def process_gone(pid: int) -> bool:
    """No such process, or a zombie nobody reaped yet (dead all the same)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def test_variant_process_dies_with_a_sigkilled_driver_and_the_rerun_finishes_the_matrix(
    tmp_path, tiny_image_folder
):
    """Only the driver is killed (``kill -9 <pid>``, not its group): a variant process left
    training would finish its run behind a runs.csv and a parent run nobody updates."""
    recipe = recipe_for(tmp_path, tiny_image_folder, matrix={"train.optimizer.lr": [0.05, 0.02]})
    ids = variant_ids(recipe)
    vid = ids["lr=0.05,seed=0"]
    proc = start_bench(tmp_path, recipe, fault=f"run.checkpoint.1@{vid}:block,{EPOCH_LOG}")
    [child] = reached(tmp_path, proc)
    try:
        assert child != proc.pid
        os.kill(proc.pid, signal.SIGKILL)  # the driver alone
        proc.wait(timeout=60)  # not communicate: a surviving child holds the pipes open
        deadline = time.monotonic() + 10
        while not process_gone(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process_gone(child), "the variant's process outlived its driver"
    finally:
        (tmp_path / "release").touch()  # a survivor would go on training now: stop it below
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)

    assert_rerun_resumes_at_once(tmp_path, recipe, ids)


def assert_rerun_resumes_at_once(tmp_path, recipe, ids) -> None:
    """The same command, run at once after a kill: it resumes the killed variant, trains every
    epoch of every variant exactly once, and every status (MLflow, runs.csv) tells the truth."""
    rc, err = run_bench(tmp_path, recipe, fault=EPOCH_LOG)
    assert rc == 0, err
    assert "resuming lr=0.05,seed=0 from its last checkpoint" in err
    expected = [f"{e}@{v}" for v in ids.values() for e in range(EPOCHS)]
    assert sorted(trained_epochs(tmp_path)) == sorted(expected)  # every epoch of every variant once
    runs = all_runs(tmp_path)
    keys = [r.data.tags["bench.run_key"] for r in children(runs)]
    assert len(keys) == len(set(keys)) == len(ids)  # one MLflow run per run key
    assert {(r.info.status, r.data.tags["bench.status"]) for r in children(runs)} == {
        ("FINISHED", "finished")
    }
    assert sorted(p.info.status for p in parents(runs)) == ["FINISHED", "KILLED"]
    assert table(tmp_path)["status"].tolist() == ["finished", "finished"]
    assert_csv_agrees_with_mlflow(tmp_path)
