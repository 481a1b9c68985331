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

import pandas as pd
import pytest

from bench.cli import main
from tests.recipes import tiny_recipe, write_recipe

REPO = Path(__file__).resolve().parent.parent


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


def client_for(tmp_path: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")


def all_runs(tmp_path: Path, experiment: str = "tiny"):
    client = client_for(tmp_path)
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id], max_results=1000)


def children(runs):
    return [r for r in runs if r.data.tags.get("bench.kind") != "recipe"]


def parents(runs):
    return [r for r in runs if r.data.tags.get("bench.kind") == "recipe"]


def steps(tmp_path: Path, run_id: str, key: str = "train/loss") -> list[int]:
    return [m.step for m in client_for(tmp_path).get_metric_history(run_id, key)]


def bench(tmp_path: Path, recipe: Path, *extra: str) -> int:
    return main(["run", str(recipe), "--results-dir", str(tmp_path / "results"),
                 "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", *extra])  # fmt: skip


def table(tmp_path: Path, name: str = "tiny") -> pd.DataFrame:
    return pd.read_csv(tmp_path / "results" / name / "runs.csv")


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
    if mode == "raise":
        artifacts = [f.path for f in client_for(tmp_path).list_artifacts(failed.info.run_id)]
        assert "error.txt" in artifacts
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


# --- real signals to a real ``bench run`` process -----------------------------------------------------


def start_bench(tmp_path: Path, recipe: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.cli", "run", str(recipe), "--results-dir", str(tmp_path / "results"),
         "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for_checkpoint(tmp_path: Path, proc: subprocess.Popen, timeout: float = 120) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list((tmp_path / "results").glob("tiny/runs/*/last.ckpt"))
        if found:
            return found[0]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    proc.kill()
    raise AssertionError("no checkpoint appeared")


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_marks_run_killed(tmp_path, tiny_image_folder, sig, code):
    # 20 steps per epoch, 6 epochs: the signal lands well before the end
    recipe = cpu_recipe(tmp_path, tiny_image_folder, **{"train.epochs": 6, "data.batch_size": 8})
    proc = start_bench(tmp_path, recipe)
    wait_for_checkpoint(tmp_path, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    [child] = children(all_runs(tmp_path))
    assert child.info.status == "KILLED"
    assert child.data.tags["bench.status"] == "interrupted"
    assert [p.info.status for p in parents(all_runs(tmp_path))] == ["KILLED"]
    assert table(tmp_path)["status"].tolist() == ["interrupted"]


# --- an unreachable tracking store: fails before training, naming the URI ------------------------------


def test_unreachable_tracking_store_fails_before_training(tmp_path, tiny_image_folder, capfd):
    recipe = cpu_recipe(tmp_path, tiny_image_folder)
    uri = "sqlite:////dev/null/nowhere/mlflow.db"
    rc = main(["run", str(recipe), "--results-dir", str(tmp_path / "results"), "--tracking-uri", uri])
    err = capfd.readouterr().err
    assert rc == 3
    assert uri in err and "Traceback" not in err
    assert not (tmp_path / "results" / "tiny").exists()
