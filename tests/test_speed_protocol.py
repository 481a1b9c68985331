"""The speed measurement protocol on a busy machine (issue: speed you can trust): a 4-variant ×
3-seed study whose three non-baseline variants change no per-step computation (only the LR), run
in seed blocks. With a CPU hog competing during part of the study, no variant may be reported
faster or slower: its paired ratio interval contains 1.00 or its contaminated runs are left out.
Without the hog every A/A ratio interval contains 1.00. (The issue asks for intervals within ±5%
of 1: on the 2-core CI box a tiny CPU run's throughput varies ~±5% from one process to the next
with nothing else running, so 3 seed pairs give about ±12%; the printed table is the measured
noise floor, and more seeds or longer runs narrow it.)"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import fresh_store
from tests.recipes import tiny_recipe, write_recipe

REPO = Path(__file__).resolve().parents[1]
LRS = [0.05, 0.04, 0.03, 0.02]  # the LR changes no per-step compute: every ratio is truly 1.00


CPU_HOG = ["-c", "while True: pass"]  # one per core
# a second process computing on the GPU: a CUDA context NVML lists, and kernels that share the SMs
GPU_HOG = ["-c", "import torch\na = torch.randn(8192, 8192, device='cuda')\nwhile True:\n    a @ a\n"
           "    torch.cuda.synchronize()"]  # fmt: skip


def study(tmp_path: Path, folder: Path, name: str, hog_window: tuple[float, float] | None = None,
          hog: tuple[list[str], int] | None = None, **dotted):  # fmt: skip
    """Run the study through the CLI (with ``hog`` = (python arguments, count) processes, default a
    busy loop per core, from ``hog_window[0]`` to ``hog_window[1]`` seconds after the start), then
    report it; returns (baseline table, runs, wall s). ``dotted``: recipe overrides."""
    from bench.commands.api import report_recipe

    recipe = tiny_recipe(folder, name=name, matrix={"train.optimizer.lr": LRS}, baseline="lr=0.05",
                         seeds=[0, 1, 2], **{"train.epochs": 4, "train.warmup_steps": 5, **dotted})  # fmt: skip
    path = write_recipe(tmp_path / f"{name}.yaml", recipe)
    results = tmp_path / "results"
    fresh_store(results / "mlflow.db")  # the default store
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    hogs: list[subprocess.Popen] = []
    stop = threading.Event()

    hog_args, count = hog or (CPU_HOG, os.cpu_count() or 2)

    def busy() -> None:
        if stop.wait(hog_window[0]):
            return
        hogs.extend(subprocess.Popen([sys.executable, *hog_args]) for _ in range(count))
        stop.wait(hog_window[1] - hog_window[0])
        for h in hogs:
            h.kill()
            h.wait()

    thread = threading.Thread(target=busy) if hog_window else None
    started = time.perf_counter()
    if thread:
        thread.start()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "bench.cli", "run", str(path), "--results-dir", str(results), "--order", "seed-blocks"],
            capture_output=True, text=True, env=env, timeout=1200,
        )  # fmt: skip
    finally:
        stop.set()
        if thread:
            thread.join()
    wall = time.perf_counter() - started
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    tables = report_recipe(path, results_dir=results)
    return tables["baseline"].set_index("variant"), tables["runs"], wall


@pytest.mark.slow
def test_a_cpu_hog_never_makes_a_compute_neutral_variant_faster_or_slower(tmp_path, timing_image_folder):
    quiet, quiet_runs, wall = study(tmp_path / "quiet", timing_image_folder, "quiet")
    cols = ["train_img_s_ratio", "train_img_s_lo", "train_img_s_hi", "speed_left_out", "speed_verdict"]
    print("without the hog:\n", quiet[cols].to_string())  # the A/A figures, with -s
    others = [v for v in quiet.index if v != "lr=0.05"]
    assert len(others) == 3
    for v in others:
        row = quiet.loc[v]
        assert row["speed_verdict"] not in ("faster", "slower"), (v, row.to_dict())
    clean = (quiet_runs.get("contention/speed_contaminated", 0) == 0).all()
    if clean:  # nobody else competed for the cores: the A/A intervals cover the true ratio, 1
        # Each is a 95% interval, so one of three misses 1 in ~14% of correct studies (CI saw
        # lr=0.03 at 0.91 [0.86, 0.96]); two misses in ~1-2%, and would point at a biased ratio.
        missed = [(v, lo, hi) for v in others
                  if not (lo := quiet.loc[v, "train_img_s_lo"]) <= 1.0 <= (hi := quiet.loc[v, "train_img_s_hi"])]  # fmt: skip
        assert len(missed) <= 1, missed

    # the same study with busy loops on every core for its middle third
    busy, busy_runs, _ = study(tmp_path / "busy", timing_image_folder, "busy", (wall / 3, 2 * wall / 3))
    print("with the hog:\n", busy[cols].to_string())
    assert (busy_runs["contention/speed_contaminated"] > 0.5).any()  # the monitor saw the hog
    for v in others:
        row = busy.loc[v]
        assert row["speed_verdict"] not in ("faster", "slower"), (v, row.to_dict())
        contains_one = row["train_img_s_lo"] <= 1.0 <= row["train_img_s_hi"]
        left_out = row["speed_left_out"] > 0
        assert contains_one or left_out, (v, row.to_dict())


@pytest.mark.slow
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_second_process_on_the_gpu_is_seen_from_nvml_and_its_runs_left_out(tmp_path, gpu_image_folder):
    """The GPU half of the protocol (ResNet-18, CIFAR stem, on the GPU): on a GPU of its own the
    A/A ratios of the compute-neutral variants lie within ±5% of 1 and NVML sees no other process;
    with a second process computing on the same GPU for the middle third of the study, NVML names
    the runs it overlapped, they are marked contaminated and left out, and no variant is called
    faster or slower."""
    gpu = {"train.device": "cuda", "model.name": "resnet18_cifar", "data.batch_size": 256,
           "data.eval_batch_size": 512, "train.epochs": 3}  # fmt: skip
    cols = ["train_img_s_ratio", "train_img_s_lo", "train_img_s_hi", "speed_left_out", "speed_verdict"]
    quiet, quiet_runs, wall = study(tmp_path / "quiet", gpu_image_folder, "gpuquiet", **gpu)
    print("GPU, alone:\n", quiet[cols].to_string())
    print(quiet_runs[["variant", "throughput/train_img_s", "contention/gpu_other_procs"]].to_string())
    assert (
        quiet_runs["contention/gpu_other_procs"] == 0
    ).all()  # read from NVML; the run is not its own rival
    others = [v for v in quiet.index if v != "lr=0.05"]
    for v in others:
        assert 0.95 <= quiet.loc[v, "train_img_s_lo"] and quiet.loc[v, "train_img_s_hi"] <= 1.05, quiet.loc[v]

    busy, busy_runs, _ = study(tmp_path / "busy", gpu_image_folder, "gpubusy", (wall / 3, 2 * wall / 3),
                               hog=(GPU_HOG, 1), **gpu)  # fmt: skip
    print("GPU, shared for the middle third:\n", busy[cols].to_string())
    seen = busy_runs["contention/gpu_other_procs"] > 0
    assert seen.any() and not seen.all(), busy_runs["contention/gpu_other_procs"].tolist()
    assert (busy_runs.loc[seen, "contention/speed_contaminated"] == 1).all()
    for v in others:
        row = busy.loc[v]
        assert row["speed_verdict"] not in ("faster", "slower"), (v, row.to_dict())
        assert row["train_img_s_lo"] <= 1.0 <= row["train_img_s_hi"] or row["speed_left_out"] > 0, (
            row.to_dict()
        )
