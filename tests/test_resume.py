"""Exact resume and idempotent re-runs: a ``bench run`` killed with SIGKILL resumes to the same
weights and metrics as an uninterrupted run, into the same MLflow run with no metric gaps or
duplicates; finished variants are skipped, edited ones run fresh, ``--force`` re-runs all;
checkpoints are atomic, complete, RNG-exact and refuse truncated or code-carrying files."""

from __future__ import annotations

import os
import pickle
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.cli import main
from bench.engine import checkpoint as ckpt
from bench.errors import CheckpointError
from tests.helpers import (
    all_runs,
    children,
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

REPO = Path(__file__).resolve().parent.parent


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# --- checkpoint files ----------------------------------------------------------------------------


def test_rng_state_roundtrips_through_weights_only(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.normal()  # the legacy state then carries a cached gaussian
    state = ckpt.rng_state()
    ckpt.atomic_save({"epoch": 0, "rng": state}, tmp_path / "c.ckpt")
    expected = (random.random(), np.random.normal(), np.random.rand(), torch.rand(3))
    loaded = ckpt.safe_load(tmp_path / "c.ckpt")  # weights_only=True
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    ckpt.set_rng_state(loaded["rng"])
    again = (random.random(), np.random.normal(), np.random.rand(), torch.rand(3))
    assert expected[:3] == again[:3] and torch.equal(expected[3], again[3])


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    path = tmp_path / "last.ckpt"
    torch.save({"epoch": 1, "payload": Evil()}, path)
    with pytest.raises(CheckpointError, match="pickled Python objects or code"):
        ckpt.safe_load(path)


def test_truncated_checkpoint_is_detected(tmp_path):
    path = tmp_path / "last.ckpt"
    ckpt.atomic_save({"epoch": 1, "w": torch.randn(1000)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        ckpt.safe_load(path)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        ckpt.safe_load(path)


def test_atomic_save_never_leaves_a_partial_file(tmp_path):
    path = tmp_path / "last.ckpt"
    ckpt.atomic_save({"epoch": 1}, path)

    class Boom:
        def __reduce__(self):
            raise KeyboardInterrupt  # interrupted in the middle of writing

    with pytest.raises(KeyboardInterrupt):
        ckpt.atomic_save({"epoch": 2, "x": Boom()}, path)
    assert ckpt.safe_load(path)["epoch"] == 1  # the old checkpoint is intact
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temp file left
    (tmp_path / "last.ckpt.abc.tmp").write_bytes(b"half")  # what a SIGKILL mid-write leaves
    ckpt.remove_stale_temp_files(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


# --- in-process: stop after k epochs, resume, compare every state ------------------------------------


class StopAfter:
    """Raises KeyboardInterrupt at the end of epoch ``epoch`` (after its checkpoint is the previous one)."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_start(self, state):
        pass

    def on_epoch_end(self, state, epoch, record):
        if epoch == self.epoch:
            raise KeyboardInterrupt

    def on_end(self, state, result):
        pass


class Capture:
    def on_start(self, state):
        pass

    def on_epoch_end(self, state, epoch, record):
        pass

    def on_end(self, state, result):
        self.state, self.result = state, result


@pytest.mark.slow
@pytest.mark.parametrize("averaging", ["swa", "ema"])
def test_in_process_resume_is_exact(tmp_path, tiny_image_folder, averaging):
    """SWA or EMA (a variant delivers one model), momentum, grad clipping, augmentation, per-step
    warm-up + cosine, a validation split and best.ckpt: every state matches."""
    from bench.commands.verify_resume import compare_states
    from bench.engine.loop import run_variant
    from bench.recipe.load import load_recipe

    recipe = tiny_recipe(tiny_image_folder, **{
        "train.device": "cpu", "train.epochs": 4, "train.grad_clip": 1.0, "train.scheduler.warmup_epochs": 1,
        "train.checkpoint.keep_best": True, "data.val_size": 32,
        f"train.{averaging}": {"swa": {"start_epoch": 2, "lr": 0.01}, "ema": {"decay": 0.9, "every": 2}}[averaging],
    })  # fmt: skip
    [variant] = load_recipe(write_recipe(tmp_path / "r.yaml", recipe)).variants

    def snapshot(cap):
        s = cap.state
        return {"model": s.model.state_dict(), "optimizer": s.optimizer.state_dict(),
                "scheduler": s.schedule.state_dict(), "precision": s.precision.state_dict(),
                "tricks": {t.name: t.state_dict() for t in s.tricks},
                "metrics": [{k: v for k, v in r.items() if not k.startswith(("throughput", "time/", "contention/"))}
                            for r in s.history]}  # fmt: skip

    straight = Capture()
    run_variant(variant, hooks=[straight], run_dir=tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        run_variant(variant, hooks=[StopAfter(2)], run_dir=tmp_path / "b")
    assert ckpt.safe_load(tmp_path / "b" / ckpt.LAST)["epoch"] == 2
    assert (tmp_path / "b" / ckpt.BEST).exists()
    resumed = Capture()
    result = run_variant(variant, hooks=[resumed], run_dir=tmp_path / "b")
    assert resumed.state.resumed_from_epoch == 2
    assert {averaging, "grad_clip"} <= {t.name for t in resumed.state.tricks}
    diffs = compare_states(snapshot(straight), snapshot(resumed))
    assert diffs == dict.fromkeys(diffs, 0.0)
    for key in (
        "test/acc",
        "test/acc_raw",
        f"test/acc_{averaging}",
        f"val/acc_{averaging}",
        "train/loss",
        "test/acc_oracle",
        "test/acc_at_best_val",
    ):
        assert result.metrics[key] == straight.result.metrics[key]


@pytest.mark.slow
def test_checkpoint_from_another_config_is_refused(tmp_path, tiny_image_folder):
    from bench.engine.loop import run_variant
    from bench.recipe.load import load_recipe

    base = tiny_recipe(tiny_image_folder, **{"train.device": "cpu", "train.epochs": 1})
    [a] = load_recipe(write_recipe(tmp_path / "a.yaml", base)).variants
    [b] = load_recipe(write_recipe(tmp_path / "b.yaml", {**base, "seeds": [1]})).variants
    run_variant(a, run_dir=tmp_path / "run")
    with pytest.raises(CheckpointError, match="another configuration"):
        run_variant(b, run_dir=tmp_path / "run")


# --- a real ``bench run`` killed with SIGKILL, resumed, compared with an uninterrupted run ------------


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path, tiny_image_folder, capfd):
    epochs = 5
    recipe_dict = tiny_recipe(
        tiny_image_folder, **{"train.device": "cpu", "train.epochs": epochs, "data.batch_size": 8}
    )
    killed_dir, straight_dir = tmp_path / "killed", tmp_path / "straight"
    recipe = write_recipe(killed_dir / "tiny.yaml", recipe_dict)
    proc = start_bench(killed_dir, recipe, fault="run.checkpoint.2:block")
    reached(killed_dir, proc)  # stopped right after the checkpoint of epoch 2: kill -9 the command now
    kill_group(proc)
    assert proc.returncode == -signal.SIGKILL
    [last] = list((killed_dir / "results").glob("tiny/runs/*/last.ckpt"))
    run_dir = last.parent
    assert ckpt.safe_load(last)["epoch"] == 2 and not (run_dir / "model.pt").exists()
    [stale] = children(all_runs(killed_dir))
    assert stale.info.status == "RUNNING"  # what MLflow alone would leave forever

    rc, err = run_bench(killed_dir, recipe)  # the same command again, at once: the lock died with it
    assert rc == 0, err
    assert "closed 2 MLflow run(s) that a killed bench run of this recipe left running" in err
    assert "resuming" in err
    runs = all_runs(killed_dir)
    [child] = children(runs)  # resumed into the same run: no duplicate
    assert child.info.run_id == stale.info.run_id and child.info.status == "FINISHED"
    for key in ("train/loss", "test/acc", "train/lr"):
        assert steps(killed_dir, child.info.run_id, key) == list(range(epochs))  # no gap, no duplicate
    assert sorted(p.info.status for p in parents(runs)) == ["FINISHED", "KILLED"]
    assert not list(run_dir.glob("*.tmp"))

    # the reference run as a command of its own too (not in this test process, whose long-lived
    # forkserver earlier tests started)
    rc, err = run_bench(straight_dir, write_recipe(straight_dir / "tiny.yaml", recipe_dict))
    assert rc == 0, err
    assert_same_tensors(weights(killed_dir / "results/tiny/weights/seed=0.pt"),
                        weights(straight_dir / "results/tiny/weights/seed=0.pt"))  # fmt: skip
    a, b = table(killed_dir).iloc[0], table(straight_dir).iloc[0]
    for key in ("test/acc", "test/acc_oracle", "train/loss"):
        assert a[key] == b[key]
    [ref] = children(all_runs(straight_dir))
    client_a, client_b = (
        __import__("tests.test_faults").test_faults.client_for(d) for d in (killed_dir, straight_dir)
    )
    for key in ("train/loss", "test/acc"):
        va = [m.value for m in client_a.get_metric_history(child.info.run_id, key)]
        vb = [m.value for m in client_b.get_metric_history(ref.info.run_id, key)]
        assert va == vb


@pytest.mark.slow
def test_truncated_checkpoint_is_reported_not_replaced(tmp_path, tiny_image_folder, capfd):
    flag = tmp_path / "once"
    model = {
        "name": "tests.test_faults:faulty",
        "kwargs": {"mode": "interrupt", "after": 7, "flag": str(flag)},
    }
    recipe = write_recipe(tmp_path / "tiny.yaml", tiny_recipe(tiny_image_folder, **{
        "train.device": "cpu", "train.epochs": 3, "model": model}))  # fmt: skip
    assert bench(tmp_path, recipe) == 130
    [last] = list((tmp_path / "results").glob("tiny/runs/*/last.ckpt"))
    truncated = last.read_bytes()[:1000]
    last.write_bytes(truncated)
    capfd.readouterr()
    assert bench(tmp_path, recipe) == 1
    [row] = table(tmp_path).to_dict("records")
    assert (
        row["status"] == "failed" and "truncated or corrupt" in row["reason"] and str(last) in row["reason"]
    )
    assert last.read_bytes() == truncated  # never silently replaced by a fresh start
    [child] = children(all_runs(tmp_path))
    assert child.info.status == "FAILED"
    assert bench(tmp_path, recipe, "--force") == 0  # the way out the message names
    assert table(tmp_path)["status"].tolist() == ["finished"]


# --- idempotent re-runs ------------------------------------------------------------------------------


@pytest.mark.slow
def test_rerun_skips_finished_edit_runs_fresh_force_reruns(tmp_path, tiny_image_folder, capfd):
    def recipe_with(lrs):
        return write_recipe(tmp_path / "tiny.yaml", tiny_recipe(tiny_image_folder, **{
            "train.device": "cpu", "train.epochs": 1, "matrix": {"train.optimizer.lr": lrs}}))  # fmt: skip

    assert bench(tmp_path, recipe_with([0.05, 0.02])) == 0
    first = {r.data.tags["bench.run_key"]: r for r in children(all_runs(tmp_path))}
    assert len(first) == 2
    capfd.readouterr()

    assert bench(tmp_path, recipe_with([0.05, 0.02])) == 0
    assert capfd.readouterr().err.count("already finished, skipped") == 2
    assert len(children(all_runs(tmp_path))) == 2  # nothing new
    assert table(tmp_path)["status"].tolist() == ["finished", "finished"]

    assert bench(tmp_path, recipe_with([0.05, 0.03])) == 0  # edited: lr=0.02 became 0.03
    assert capfd.readouterr().err.count("already finished, skipped") == 1
    runs = children(all_runs(tmp_path))
    assert len(runs) == 3
    for run in runs:  # earlier runs untouched
        if run.info.run_id in {r.info.run_id for r in first.values()}:
            assert run.info.status == "FINISHED" and run.data.tags["bench.status"] == "finished"

    assert bench(tmp_path, recipe_with([0.05, 0.03]), "--force") == 0
    assert "skipped" not in capfd.readouterr().err
    assert len(children(all_runs(tmp_path))) == 5
    assert not [r for r in all_runs(tmp_path) if r.info.status == "RUNNING"]


# --- bench verify-resume ------------------------------------------------------------------------------


def test_compare_states_finds_any_difference():
    from bench.commands.verify_resume import compare_states, verdict_text

    state = {"model": {"w": torch.ones(3)}, "optimizer": {"state": {0: {"m": torch.zeros(2)}}, "lr": 0.1},
             "scheduler": {"last_epoch": 3}, "scaler": {}, "swa": {}, "metrics": {"history": [{"a": 1.0}]}}  # fmt: skip
    same = pickle.loads(pickle.dumps(state))
    diffs = compare_states(state, same)
    assert diffs == dict.fromkeys(diffs, 0.0) and verdict_text(diffs, 0.0)[0]
    other = pickle.loads(pickle.dumps(state))
    other["model"]["w"][1] += 1e-6
    other["scheduler"]["last_epoch"] = 4
    diffs = compare_states(state, other)
    assert diffs["model"] == pytest.approx(1e-6, rel=0.1) and diffs["scheduler"] == 1.0
    ok, text = verdict_text(diffs, 0.0)
    assert not ok and "FAIL" in text and "MISMATCH" in text


@pytest.mark.slow
def test_verify_resume_command_passes(tmp_path, tiny_image_folder):
    recipe = write_recipe(tmp_path / "tiny.yaml", tiny_recipe(tiny_image_folder, **{
        "train.device": "cpu", "train.epochs": 3, "train.swa": {"start_epoch": 1, "lr": 0.01},
        "matrix": {"train.optimizer.momentum": [0.0, 0.9]}}))  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-m", "bench.cli", "verify-resume", str(recipe), "--variant", "momentum=0.9"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "PASS" in out.stdout and "killed (exit -9)" in out.stdout
    for part in ("model", "optimizer", "scheduler", "precision", "trick:swa", "metrics"):
        assert any(line.split()[:2] == [part, "0"] for line in out.stdout.splitlines()), part


def test_verify_resume_rejects_bad_arguments(tmp_path, tiny_image_folder, capfd):
    recipe = write_recipe(tmp_path / "tiny.yaml", tiny_recipe(tiny_image_folder, **{"train.epochs": 1}))
    assert main(["verify-resume", str(recipe)]) == 2
    assert "train.epochs" in capfd.readouterr().err
    assert main(["verify-resume", str(recipe), "train.epochs=3", "--variant", "nope"]) == 2
    assert "--variant" in capfd.readouterr().err
