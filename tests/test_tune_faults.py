"""Faults caused for real on real ``bench tune`` processes: a SIGKILL at a named point of a claim,
two commands sharing a study, Ctrl-C / SIGTERM with and without spawned workers, crashing
workers, and the MLflow runs and Optuna trials agreeing after each. Points are armed with BENCH_FAULT
(tests/faultinject/faultpoints.py), so the fault lands exactly where the test says (slow: the trials train for real)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests import procs
from tests.helpers import bench_env, fresh_store, tune_recipe

REPO = Path(__file__).resolve().parent.parent
LIVENESS = {"heartbeat_interval": 1, "grace_period": 3}
pytestmark = pytest.mark.slow


@pytest.fixture
def recipe(tmp_path, tiny_image_folder) -> Path:
    tune = {
        "n_trials": 2,
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
        "liveness": LIVENESS,
        "recheck_top": 0,  # up to 6 more runs per finished study; the faults are in the trials (re-checks: test_tune_noise)
    }
    return tune_recipe(tmp_path, tiny_image_folder, tune=tune, **{"data.val_size": 32, "train.epochs": 1})


def command(tmp_path: Path, recipe: Path, *extra: str, results: str = "res") -> list[str]:
    uri = fresh_store(tmp_path / "mlflow.db")
    return [sys.executable, "-m", "bench.cli", "tune", str(recipe), "--results-dir", str(tmp_path / results),
            "--tracking-uri", uri, *extra]  # fmt: skip


def start(tmp_path: Path, args: list[str], fault: str = "", ctrl_c_ignored: bool = False) -> subprocess.Popen:
    return procs.popen(
        args,
        cwd=REPO,
        env=bench_env(tmp_path, fault),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        ctrl_c_ignored=ctrl_c_ignored,
    )


def finish(proc: subprocess.Popen, timeout: float = 400) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def reached(tmp_path: Path, proc: subprocess.Popen, n: int = 1, timeout: float = 300) -> list[int]:
    """The pids blocked at the armed point, once ``n`` processes have reached it."""
    deadline = time.monotonic() + timeout
    while len(found := list(tmp_path.glob("release.reached.*"))) < n:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"the fault point was not reached: {proc.communicate()[1][-3000:]}")
        time.sleep(0.1)
    return [int(p.name.rsplit(".", 1)[1]) for p in found]


def study_trials(storage: str, name: str = "tinytune"):
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if "://" not in storage:  # an older bench's journal (a test run on the old code)
        storage = optuna.storages.JournalStorage(JournalFileBackend(storage))
    return optuna.load_study(study_name=name, storage=storage).get_trials()


def assert_complete(trials, n: int = 2) -> None:
    from bench.tune.liveness import counts

    assert counts(trials) == {"COMPLETE": n}, [(t.number, t.state.name, t.system_attrs) for t in trials]


def parent_status(tmp_path: Path) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("tinytune")
    runs = client.search_runs([exp.experiment_id], "tags.`bench.kind` = 'study'")
    assert len(runs) == 1
    return runs[0].info.status


def gone(pid: int) -> bool:
    try:
        return "State:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True


# --- item 9: a worker dies before its first heartbeat, on a database storage -----------------------


@pytest.mark.parametrize("point", ["tune.asked", "tune.claimed"])
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_worker_killed_while_claiming_on_a_database(tmp_path, recipe, point, backend):
    if backend == "postgres":
        if not os.environ.get("BENCH_TEST_POSTGRES_URL"):
            pytest.skip("BENCH_TEST_POSTGRES_URL is not set (scripts/ci_postgres.sh provisions one)")
        storage, study = os.environ["BENCH_TEST_POSTGRES_URL"], f"pg-{uuid.uuid4().hex[:8]}"
    else:
        storage, study = f"sqlite:///{tmp_path}/optuna.db", "tinytune"
    args = command(tmp_path, recipe, "--storage", storage, "--study", study)
    code, err = finish(start(tmp_path, args, f"{point}:kill"))
    assert code == -signal.SIGKILL, err
    assert [t.state.name for t in study_trials(storage, study)] == ["RUNNING"]
    time.sleep(LIVENESS["grace_period"] + 1)  # its heartbeat (if any) is now stale
    code, err = finish(start(tmp_path, args))
    assert code == 0, err
    trials = study_trials(storage, study)
    assert trials[0].state.name == "FAIL" and "retried" in err
    assert_complete(trials)


# --- item 10: two commands, one study, different results folders ------------------------------------


def test_two_commands_on_one_study_respect_each_others_trials(tmp_path, recipe):
    storage = f"sqlite:///{tmp_path}/shared.db"
    first = start(
        tmp_path, command(tmp_path, recipe, "--storage", storage, results="a"), "tune.trial_leased:block"
    )
    reached(tmp_path, first)
    time.sleep(
        LIVENESS["grace_period"] + 2
    )  # long enough for its trial to look dead, were its beats not seen
    code, err = finish(start(tmp_path, command(tmp_path, recipe, "--storage", storage, results="b")))
    assert code == 0, err
    assert "heartbeat" not in err and "retried" not in err
    (tmp_path / "release").touch()
    code, err = finish(first)
    assert code == 0, err
    trials = study_trials(storage)
    assert_complete(trials)
    assert len(trials) == 2  # nothing failed, nothing retried


# --- item 12: Ctrl-C and SIGTERM re-queue; workers die with the command ------------------------------


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_trial_is_requeued(tmp_path, recipe, sig, code):
    proc = start(tmp_path, command(tmp_path, recipe), "tune.trial_leased:block")
    reached(tmp_path, proc)
    os.kill(proc.pid, sig)
    got, err = finish(proc, 120)
    assert got == code, err
    storage = default_storage(tmp_path)
    trials = study_trials(storage)
    assert [t.state.name for t in trials] == ["FAIL", "WAITING"]
    assert trials[0].user_attrs["bench.fail_reason"] == "interrupted"
    assert parent_status(tmp_path) == "KILLED"
    got, err = finish(start(tmp_path, command(tmp_path, recipe)))
    assert got == 0, err
    assert_complete(study_trials(storage))  # the interrupted trial does not take a slot
    assert parent_status(tmp_path) == "FINISHED"


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGKILL, -9)])
def test_spawned_workers_stop_with_the_command(tmp_path, recipe, sig, code):
    proc = start(tmp_path, command(tmp_path, recipe, "--workers", "2"), "tune.trial_leased:block")
    workers = reached(tmp_path, proc, 2)
    os.kill(proc.pid, sig)
    got, err = finish(proc, 120)
    assert got == code, err
    deadline = time.monotonic() + 60
    while not all(gone(pid) for pid in workers):
        assert time.monotonic() < deadline, "a worker outlived its command"
        time.sleep(0.1)
    storage = default_storage(tmp_path)
    states = sorted(t.state.name for t in study_trials(storage))
    assert states == ["FAIL", "FAIL", "WAITING", "WAITING"], err[-3000:]  # both trials re-queued
    got, err = finish(start(tmp_path, command(tmp_path, recipe, "--workers", "2")))
    assert got == 0, err
    assert_complete(study_trials(storage))


def test_spawned_workers_keep_ctrl_c_ignored_when_the_command_does(tmp_path, recipe):
    """A study started in the background from a script ignores SIGINT; so do its spawned workers,
    although they act on the first SIGINT or SIGTERM otherwise: the script's Ctrl-C stops no trial."""
    proc = start(
        tmp_path, command(tmp_path, recipe, "--workers", "2"), "tune.trial_leased:block", ctrl_c_ignored=True
    )
    reached(tmp_path, proc, 2)
    os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: to the whole process group
    time.sleep(1)
    (tmp_path / "release").touch()
    got, err = finish(proc)
    assert got == 0, err
    assert_complete(study_trials(default_storage(tmp_path)))


def test_crashed_workers_fail_the_study(tmp_path, recipe):
    proc = start(tmp_path, command(tmp_path, recipe, "--workers", "2"), "tune.claimed:exit")
    got, err = finish(proc)
    assert got == 1 and "exited with codes [99, 99]" in err, err
    assert parent_status(tmp_path) == "FAILED"


# --- issue 22: the two stores agree (MLflow runs and Optuna trials) ----------------------------------


def default_storage(tmp_path: Path, results: str = "res") -> str:
    """The study's default storage under the results folder (an older bench: the journal file)."""
    folder = tmp_path / results / "tinytune"
    db = folder / "optuna.db"
    return f"sqlite:///{db}" if db.exists() else str(folder / "optuna.journal")


def trial_runs(tmp_path: Path) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("tinytune")
    return client.search_runs([exp.experiment_id], "tags.`bench.kind` = 'trial'")


def test_sigkilled_workers_run_is_closed_when_the_study_completes(tmp_path, recipe):
    """One of two workers is SIGKILLed inside its trial's MLflow run; the other retries that trial
    once its heartbeat is stale and completes the study: the killed run ends FAILED with a reason."""
    proc = start(tmp_path, command(tmp_path, recipe, "--workers", "2", "tune.recheck_top=0"),
                 "tune.trial_run_opened:block")  # fmt: skip
    victim, _ = sorted(reached(tmp_path, proc, 2))
    os.kill(victim, signal.SIGKILL)
    time.sleep(LIVENESS["grace_period"] + 2)  # its heartbeat is stale before the survivor asks again
    (tmp_path / "release").touch()
    code, err = finish(proc)
    assert code == 1 and "exited with codes [-9]" in err, err  # the study completes; the crash is reported
    trials = study_trials(default_storage(tmp_path))
    assert_complete(trials)
    runs = trial_runs(tmp_path)
    assert not [r.info.run_id for r in runs if r.info.status == "RUNNING"], err
    killed = [r for r in runs if r.info.status == "FAILED"]
    assert len(killed) == 1 and "heartbeat" in killed[0].data.tags["bench.reason"]
    assert sorted(r.info.status for r in runs) == ["FAILED", "FINISHED", "FINISHED"]


def test_ctrl_c_while_a_run_closes_keeps_the_stores_agreeing(tmp_path, recipe):
    """Ctrl-C lands while trial 0's MLflow run is being closed: the trial keeps its result in
    Optuna too (COMPLETE, as MLflow says FINISHED), and its parameters never train again."""
    args = command(tmp_path, recipe, "tune.recheck_top=0")
    code, err = finish(start(tmp_path, args, "run.close.before_status:int"))
    assert code == 130, err
    assert [t.state.name for t in study_trials(default_storage(tmp_path))] == ["COMPLETE"]
    code, err = finish(start(tmp_path, args))
    assert code == 0, err
    trials = study_trials(default_storage(tmp_path))
    assert_complete(trials)
    assert len(trials) == 2  # nothing failed, nothing retried
    runs = trial_runs(tmp_path)
    assert sorted(r.info.status for r in runs) == ["FINISHED", "FINISHED"]
    assert len({r.data.params["train.optimizer.lr"] for r in runs}) == 2  # no parameters trained twice


def test_ctrl_c_of_a_tune_says_what_it_kept_of_the_study(tmp_path, recipe):
    """Ctrl-C of `bench tune recipes/smoke_tune.yaml` said "finished variants are recorded", the
    words of `bench run`: a study has trials, and the interrupted one is queued again."""
    proc = start(tmp_path, command(tmp_path, recipe), "tune.claimed:int")
    code, err = finish(proc)
    assert code == 130, err
    assert "interrupted: finished trials are recorded and an interrupted one is queued again" in err, err
    assert "variants" not in err.splitlines()[-1]
