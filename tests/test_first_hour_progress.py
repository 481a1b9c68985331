"""Trap 5 of "The first hour of a new user": no progress inside an epoch. ``bench run`` left the
progress mode unset, which reached the training child as "off", so a terminal never saw the
per-batch bar; the time left averaged fast and slow variants; tiny runs printed ``nan img/s``."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import select
import struct
import sys
import termios
import time
from pathlib import Path

from bench.execution.progress import Progress
from tests import procs
from tests.helpers import bench_main, fresh_store
from tests.recipes import tiny_recipe, write_recipe

REPO = Path(__file__).resolve().parent.parent


def child_env() -> dict[str, str]:
    """The CLI child imports this tree's ``bench`` (the editable install may point elsewhere)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def run_in_terminal(args: list[str], timeout: float = 300) -> tuple[int, str]:
    """``bench`` with stdin/stdout/stderr on a real pseudo-terminal; returns (exit code, what it drew)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal has a size
    proc = procs.popen(
        [sys.executable, "-m", "bench.cli", *args], stdin=slave, stdout=slave, stderr=slave, env=child_env()
    )
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every writer has closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        return proc.wait(timeout=30), b"".join(chunks).decode(errors="replace")
    finally:
        os.close(master)  # the process group is killed after the test (tests/procs.py)


def test_a_terminal_gets_a_per_batch_bar_with_images_per_second_and_loss(tmp_path, tiny_image_folder):
    recipe = tiny_recipe(tiny_image_folder, name="ttybar")
    recipe["train"]["epochs"] = 1
    path = write_recipe(tmp_path / "ttybar.yaml", recipe)
    code, screen = run_in_terminal(
        [
            "run",
            str(path),
            "--results-dir",
            str(tmp_path / "results"),
            "--tracking-uri",
            fresh_store(tmp_path / "mlflow.db"),
        ]  # fmt: skip
    )
    assert code == 0, screen
    assert "epoch 1/1" in screen and "5/5" in screen, screen  # the tqdm bar: batches done of 5
    assert "batch" in screen and "img/s" in screen and "loss=" in screen, screen


def test_a_log_gets_one_line_per_epoch_and_says_when_too_few_steps_to_time(tmp_path, tiny_image_folder):
    recipe = tiny_recipe(tiny_image_folder, name="logbar")
    recipe["train"]["epochs"] = 1
    recipe["train"]["warmup_steps"] = 50  # more than the 5 batches: every step is warm-up
    path = write_recipe(tmp_path / "logbar.yaml", recipe)
    # in process: its output goes to files, as a log's would (bench_main catches file descriptors 1 and 2)
    proc = bench_main("run", str(path), "--results-dir", str(tmp_path / "results"),
                      "--tracking-uri", fresh_store(tmp_path / "mlflow.db"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    epoch_lines = [line for line in proc.stderr.splitlines() if "| epoch" in line]
    assert len(epoch_lines) == 1, proc.stderr
    assert "nan" not in epoch_lines[0] and "too few steps to time" in epoch_lines[0], epoch_lines
    assert "\r" not in proc.stderr  # no bar drawn into a log


def test_time_left_counts_each_variant_by_its_own_earlier_time():
    """A slow variant timed before counts at its own time, not at the mean of the fast ones."""
    out = io.StringIO()
    progress = Progress(3, stream=out, live=False)
    progress.expect({"fast": 1.0, "slow": 200.0})
    progress.pending(["fast", "slow", "new"])
    progress.variant_start("fast")
    progress.variant_end("finished")  # took ~0 s here
    lines = out.getvalue().splitlines()
    # left: slow (200 s from its earlier run) + new (the mean of what is known)
    assert "~3m" in lines[-1], lines


def test_a_rerun_with_everything_finished_does_not_promise_zero_seconds_left():
    """Rerunning a finished study printed `[0/2 done, 2 left, ~0s left]`: the variants to come are
    skipped as already finished, which the line should say instead."""
    out = io.StringIO()
    progress = Progress(2, stream=out, live=False)
    progress.expect({"a": 0.0, "b": 0.0})
    progress.pending(["a", "b"])
    progress.variant_start("a")
    assert out.getvalue().splitlines()[-1] == "[0/2 done, 2 left, the rest already finished] a"


def test_an_ema_variants_epoch_lines_label_the_trained_weights_accuracy_raw(tmp_path, tiny_image_folder):
    """EMA (like SWA) delivers its own model, scored once at the end: the epoch lines show the trained
    weights' accuracy and must say so, or the finish line's different test/acc reads as a mistake."""
    from bench.engine.loop import run_variant
    from bench.recipe.load import load_recipe

    recipe = tiny_recipe(tiny_image_folder, **{"train.epochs": 2, "train.ema": {"decay": 0.9}})
    [variant] = load_recipe(write_recipe(tmp_path / "ema.yaml", recipe)).variants
    out = io.StringIO()
    progress = Progress(1, stream=out, live=False)
    progress.name = variant.name
    result = run_variant(variant, progress=progress)
    epochs = [line for line in out.getvalue().splitlines() if "| epoch" in line]
    assert len(epochs) == 2 and all(" test/acc_raw " in line for line in epochs), epochs
    assert result.metrics["test/acc"] == result.metrics["test/acc_ema"]


def test_the_epoch_line_says_how_long_this_variant_has_left_from_its_own_first_epoch():
    out = io.StringIO()
    progress = Progress(1, stream=out, live=False)
    progress.name = "v"
    progress.epoch_start(0, 4)
    time.sleep(0.3)
    progress.epoch_end(0, 4, {"train/loss": 1.0, "throughput/train_img_s": 100.0})
    assert "left in this variant" in out.getvalue(), out.getvalue()


def test_a_log_hears_from_an_epoch_that_takes_minutes():
    """`bench run recipes/cifar10_resnet18.yaml` on a 2-core CPU, output to a log: two minutes of
    nothing after `[0/24 done, 24 left] precision=fp32,compile=false,seed=0` (an epoch of a GPU-sized
    recipe takes many minutes there). Now a line every heartbeat says how far the epoch is."""
    out = io.StringIO()
    progress = Progress(24, stream=out, live=False, heartbeat_s=0.2)
    progress.name = "v"
    progress.epoch_start(0, 35)
    progress.batch(0, 97, 0.0, 512)  # within the heartbeat: silent
    assert out.getvalue() == ""
    time.sleep(0.25)
    progress.batch(1, 97, 0.0, 1024)
    [line] = out.getvalue().splitlines()
    assert "v | epoch 1/35: batch 2/97" in line and "img/s" in line and "left in this epoch" in line, line
    # and what the study costs at this pace (0.25 s a batch: ~14 min a run, ~5 h for 24 runs)
    assert "per run" in line and "for the 24 runs left" in line and "h " in line.split("per run")[1], line
    progress.batch(2, 97, 0.0, 1536)  # the line just printed restarts the wait
    assert len(out.getvalue().splitlines()) == 1


def test_the_heartbeat_of_a_bench_run_projects_the_study_over_the_runs_left(
    tmp_path, tiny_image_folder, monkeypatch
):
    """`bench run` trains each variant in a child process, which counted itself as the study's only
    run: the heartbeat's '~5h for the 24 runs left' never showed outside a test that built the
    progress by hand. The child now gets the driver's runs left (a heartbeat every 0.05 s here)."""
    from bench.execution import progress

    monkeypatch.setattr(progress, "HEARTBEAT_S", 0.05)
    path = write_recipe(tmp_path / "beat.yaml", tiny_recipe(tiny_image_folder, name="beat", seeds=[0, 1, 2]))
    proc = bench_main("run", str(path), "--results-dir", str(tmp_path / "results"),
                      "--tracking-uri", fresh_store(tmp_path / "mlflow.db"), "train.epochs=1")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    beats = [line for line in proc.stderr.splitlines() if "left in this epoch" in line]
    assert beats and "for the 3 runs left" in beats[0], proc.stderr


def test_runs_already_finished_are_not_in_the_heartbeats_runs_left():
    """A rerun after 20 of 24 finished: the 20 are skipped at 0 s, so the study left is 4 runs at
    this pace, not 24."""
    progress = Progress(24, stream=io.StringIO(), live=False)
    names = [f"v{i}" for i in range(24)]
    progress.expect({n: 0.0 for n in names[:20]})
    progress.pending(names[20:] + names[:20])
    progress.variant_start("v20")
    assert progress.runs_to_train() == 4
