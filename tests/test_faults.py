"""Faults injected on purpose: a NaN loss, an exception inside a variant, Ctrl-C, SIGTERM and
SIGINT to a real ``bench run``, an unreachable MLflow store. Each is recorded truthfully (status,
reason, epoch) and the rest of the matrix goes on; an interrupted variant resumes next time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from bench.cli import main
from tests import procs
from tests.helpers import (
    REPO,
    all_runs,
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
from tests.helpers import bench_in_process as bench
from tests.recipes import tiny_recipe, write_recipe

# --- a model factory that misbehaves on request (used as model.name "tests.test_faults:faulty") ---


def faulty(num_classes: int, pretrained: bool = False, mode: str = "none", after: int = 0, flag: str = ""):
    """timm's test_resnet whose training forward, after ``after`` calls, returns NaN (``nan``),
    raises RuntimeError (``raise``) or KeyboardInterrupt (``interrupt``, once: ``flag`` file)."""
    import timm

    model = timm.create_model("test_resnet", num_classes=num_classes)
    inner = model.forward
    calls = {"n": 0}

    def forward(self, x):
        out = inner(x)
        if self.training:
            calls["n"] += 1
            if calls["n"] > after:
                if mode == "nan":
                    return out * float("nan")
                if mode == "raise":
                    raise RuntimeError("injected failure in forward")
                if mode == "interrupt" and flag and not os.path.exists(flag):
                    Path(flag).write_text("1")
                    raise KeyboardInterrupt
        return out

    model.forward = types.MethodType(forward, model)
    return model


# --- helpers ---------------------------------------------------------------------------------------


def faulty_model(mode: str, after: int, flag: str = "") -> dict:
    return {"name": "tests.test_faults:faulty", "kwargs": {"mode": mode, "after": after, "flag": flag}}


def cpu_recipe(tmp_path: Path, data: Path, **dotted) -> Path:
    dotted = {"train.device": "cpu", **dotted}
    return write_recipe(tmp_path / "tiny.yaml", tiny_recipe(data, **dotted))


# --- NaN and exceptions: the variant fails with epoch and reason, the matrix goes on ----------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "reason"),
    [("nan", "diverged: loss became nan in epoch 1"), ("raise", "RuntimeError: injected failure in forward")],
)
def test_failing_variant_is_recorded_and_matrix_goes_on(tmp_path, tiny_image_folder, mode, reason, capfd):
    # 160 train images / batch 32 = 5 steps per epoch: the 6th training forward is in epoch 1.
    recipe = cpu_recipe(
        tmp_path, tiny_image_folder, matrix={"model": [faulty_model(mode, 5), {"name": "test_resnet"}]}
    )
    assert bench(tmp_path, recipe) == 1  # a failed variant makes the exit code non-zero
    rows = table(tmp_path).set_index("model")
    assert rows.loc["tests.test_faults:faulty", "status"] == "failed"
    assert reason in rows.loc["tests.test_faults:faulty", "reason"]
    assert "epoch 1" in rows.loc["tests.test_faults:faulty", "reason"]
    assert rows.loc["test_resnet", "status"] == "finished"
    runs = all_runs(tmp_path)
    by_status = {r.data.tags["bench.status"]: r for r in children(runs)}
    failed, finished = by_status["failed"], by_status["finished"]
    assert failed.info.status == "FAILED" and finished.info.status == "FINISHED"
    assert failed.data.tags["bench.failed_epoch"] == "1"
    assert reason in failed.data.tags["bench.reason"]
    assert steps(tmp_path, failed.info.run_id) == [0]  # epoch 0 recorded, nothing after the failure
    assert [p.info.status for p in parents(runs)] == ["FINISHED"]
    if mode == "raise":  # the traceback of this attempt, named by a tag
        assert failed.data.tags["bench.error"] == "errors/attempt-1.txt"
        artifacts = [f.path for f in client_for(tmp_path).list_artifacts(failed.info.run_id, "errors")]
        assert artifacts == ["errors/attempt-1.txt"]
    assert "Traceback" not in capfd.readouterr().err


# --- Ctrl-C in the middle of a variant: KILLED, checkpoint kept, resumed next time ------------------


@pytest.mark.slow
def test_ctrl_c_marks_killed_and_next_run_resumes(tmp_path, tiny_image_folder, capfd):
    flag = tmp_path / "interrupted-once"
    recipe = cpu_recipe(
        tmp_path, tiny_image_folder, **{"train.epochs": 3, "model": faulty_model("interrupt", 7, str(flag))}
    )
    assert bench(tmp_path, recipe) == 130
    assert "interrupted" in capfd.readouterr().err
    [row] = table(tmp_path).to_dict("records")
    assert row["status"] == "interrupted"
    [child] = children(all_runs(tmp_path))
    assert child.info.status == "KILLED" and child.data.tags["bench.status"] == "interrupted"
    assert [p.info.status for p in parents(all_runs(tmp_path))] == ["KILLED"]
    run_dir = tmp_path / "results" / "tiny" / "runs" / child.data.tags["bench.run_key"]
    from bench.engine.checkpoint import safe_load

    assert safe_load(run_dir / "last.ckpt")["epoch"] == 1  # epoch 0 done, killed in epoch 1
    assert not (run_dir / "model.pt").exists()

    assert bench(tmp_path, recipe) == 0  # the same command again: resumes
    assert "resuming" in capfd.readouterr().err
    [again] = children(all_runs(tmp_path))  # the same MLflow run, not a second one
    assert again.info.run_id == child.info.run_id and again.info.status == "FINISHED"
    assert steps(tmp_path, again.info.run_id) == [0, 1, 2]
    assert steps(tmp_path, again.info.run_id, "test/acc") == [0, 1, 2]  # final metrics not re-logged


# --- real ``bench run`` processes stopped at named fault points (tests/faultinject/) -----------------


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_marks_run_killed(tmp_path, tiny_image_folder, sig, code):
    """The signal lands while the variant is stopped right after its first checkpoint: no race."""
    recipe = cpu_recipe(tmp_path, tiny_image_folder, **{"train.epochs": 3})
    proc = start_bench(tmp_path, recipe, fault="run.checkpoint.1:block")
    reached(tmp_path, proc)
    proc.send_signal(sig)  # to the driver, which forwards it to the variant's process
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    [child] = children(all_runs(tmp_path))
    assert child.info.status == "KILLED"
    assert child.data.tags["bench.status"] == "interrupted"
    assert [p.info.status for p in parents(all_runs(tmp_path))] == ["KILLED"]
    assert table(tmp_path)["status"].tolist() == ["interrupted"]


@pytest.mark.slow
def test_ctrl_c_inherited_as_ignored_stops_no_variant(tmp_path, tiny_image_folder):
    """Started in the background from a script, bench inherits SIGINT as ignored and keeps it so
    (README): the script's Ctrl-C reaches every process of the group, the variant's child included,
    and the variant still finishes."""
    recipe = cpu_recipe(tmp_path, tiny_image_folder)
    proc = start_bench(tmp_path, recipe, fault="run.train_start:block", ctrl_c_ignored=True)
    reached(tmp_path, proc)
    os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: to the whole process group
    time.sleep(1)
    (tmp_path / "release").touch()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert table(tmp_path)["status"].tolist() == ["finished"]


@pytest.mark.slow
@pytest.mark.parametrize("point", ["run.close.after_export", "run.close.before_status"])
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_during_final_bookkeeping_exits_with_true_statuses(
    tmp_path, tiny_image_folder, point, sig, code
):
    """A signal while a finished variant's run is being closed (after its weights are exported; between
    its ``finished`` tag and its terminal status): the close completes, then the command stops with
    130/143; the variant is finished with its weights, and a rerun skips it."""
    recipe = cpu_recipe(tmp_path, tiny_image_folder, matrix={"train.optimizer.lr": [0.05, 0.02]})
    proc = start_bench(tmp_path, recipe, fault=f"{point}:block")
    reached(tmp_path, proc)
    proc.send_signal(sig)
    time.sleep(0.5)  # the forwarded signal is pending in the blocked variant process
    (tmp_path / "release").touch()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    runs = all_runs(tmp_path)
    [child] = children(runs)  # the second variant never started
    assert (child.info.status, child.data.tags["bench.status"]) == ("FINISHED", "finished")
    assert [p.info.status for p in parents(runs)] == ["KILLED"]
    assert (tmp_path / "results/tiny/weights/lr=0.05,seed=0.pt").exists()
    assert table(tmp_path)["status"].tolist() == ["finished", "pending"]
    assert run_bench(tmp_path, recipe, fault="run.train_start:log")[0] == 0
    assert len(fault_log(tmp_path)) == 1  # only the second variant trained
    assert table(tmp_path)["status"].tolist() == ["finished", "finished"]


@pytest.mark.slow
def test_kill_between_finished_tag_and_status_is_not_skipped(tmp_path, tiny_image_folder):
    """SIGKILL of the whole command between the ``finished`` tag and the terminal status: the
    run is RUNNING with bench.status=finished. The rerun does not take it as finished: it closes
    the dead owner's run and resumes it (from its last checkpoint, nothing retrained) to a true finish."""
    recipe = cpu_recipe(tmp_path, tiny_image_folder)
    proc = start_bench(tmp_path, recipe, fault="run.close.before_status:block")
    reached(tmp_path, proc)
    kill_group(proc)
    [stale] = children(all_runs(tmp_path))
    assert (stale.info.status, stale.data.tags["bench.status"]) == ("RUNNING", "finished")
    (tmp_path / "results/tiny/weights/seed=0.pt").unlink()  # as if killed before the export, too
    rc, err = run_bench(tmp_path, recipe, fault="run.epoch_end.0:log,run.epoch_end.1:log")  # at once
    assert rc == 0, err
    assert "resuming" in err and fault_log(tmp_path) == []  # no epoch trained again
    [child] = children(all_runs(tmp_path))
    assert child.info.run_id == stale.info.run_id
    assert (child.info.status, child.data.tags["bench.status"]) == ("FINISHED", "finished")
    assert (tmp_path / "results/tiny/weights/seed=0.pt").exists()
    assert steps(tmp_path, child.info.run_id, "test/acc_oracle") == [1]  # final metrics logged once

    (tmp_path / "results/tiny/weights/seed=0.pt").unlink()  # finished in MLflow, weights gone
    rc, err = run_bench(tmp_path, recipe, fault="run.epoch_end.0:log,run.epoch_end.1:log")
    assert rc == 0 and "resuming" in err and fault_log(tmp_path) == [], err
    assert (tmp_path / "results/tiny/weights/seed=0.pt").exists()
    assert [c.info.run_id for c in children(all_runs(tmp_path))] == [stale.info.run_id]


# --- the recipe's owner lock (issue 22): a second owner is refused at once; the lock dies with its owner ---

HOLD = """import sys, time
from bench.execution.owner import owning
with owning(sys.argv[1], "tiny"):
    print("owned", flush=True)
    time.sleep(600)
"""


def test_recipe_lock_refuses_a_second_owner_at_once_and_dies_with_a_sigkilled_owner(tmp_path):
    from bench.execution.owner import RecipeBusy, looks_busy, owning

    assert not looks_busy(tmp_path / "none", "tiny") and not (tmp_path / "none").exists()  # creates nothing
    holder = procs.popen([sys.executable, "-c", HOLD, str(tmp_path)], env={**os.environ, "PYTHONPATH": str(REPO)},
                         stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert holder.stdout.readline().strip() == "owned"
    t0 = time.monotonic()
    with pytest.raises(
        RecipeBusy, match=f"busy: recipe 'tiny' is being run by bench run pid {holder.pid} on "
    ):
        with owning(tmp_path, "tiny"):
            pass
    assert time.monotonic() - t0 < 5  # refused at once, not after a wait
    assert looks_busy(tmp_path, "tiny")  # so `bench run` starts no forkserver before it exits 4
    holder.kill()  # SIGKILL: no handler, no cleanup runs
    holder.wait()
    assert not looks_busy(tmp_path, "tiny")
    with owning(tmp_path, "tiny"):  # owned at once: nothing to expire
        assert f"pid {os.getpid()} " in (tmp_path / ".tiny.lock").read_text()
    with owning(tmp_path, "tiny"):  # released at the end of the block
        pass


# --- an unreachable tracking store: fails before training, naming the URI ------------------------------


def test_unreachable_tracking_store_fails_before_training(tmp_path, tiny_image_folder, capfd):
    recipe = cpu_recipe(tmp_path, tiny_image_folder)
    uri = "sqlite:////dev/null/nowhere/mlflow.db"
    rc = main(["run", str(recipe), "--results-dir", str(tmp_path / "results"), "--tracking-uri", uri])
    err = capfd.readouterr().err
    assert rc == 3
    assert uri in err and "Traceback" not in err
    assert not (tmp_path / "results" / "tiny").exists()


def test_deferred_signals_hold_a_signal_another_thread_takes():
    """A process-directed SIGTERM may be taken by any thread (MLflow's logging threads):
    it must still wait until the bookkeeping block is done, then act."""
    import threading

    from bench.errors import Terminated
    from bench.util.signals import deferred_signals, install_sigterm

    previous = install_sigterm()
    stop = threading.Event()
    helper = threading.Thread(target=stop.wait)  # a thread with an unblocked signal mask
    helper.start()
    done = []
    try:
        with pytest.raises(Terminated):
            with deferred_signals():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.2)
                done.append("bookkeeping")
        assert done == ["bookkeeping"]
    finally:
        stop.set(), helper.join()
        signal.signal(signal.SIGTERM, previous)
