"""How the Ray executor scales: the makespan of a study of 8 variants of known cost on k = 1, 2, 4
logical GPUs of one local Ray, against k = 1; and the wall time a Ray task adds per variant
against the local executor.

A variant's cost is made known and CPU-free: its model sleeps ``SLEEP_S`` in every training
forward (5 steps per epoch), so k tasks in flight really overlap on a 2-core machine and the ratio shows
the executor's own overhead and scheduling, not CPU contention. k is set by the GPUs each task
asks for (4, 2, 1 of 4 logical GPUs) on one Ray instance. Printed, not asserted (run with -s):

    nox -s benchmark -- -k ray -s
"""

from __future__ import annotations

import time
import types
from pathlib import Path

import pytest

from bench.cli import main
from tests.recipes import tiny_recipe, write_recipe

SLEEP_S = 0.5
EPOCHS = 2  # x 5 steps: 5 s of known cost per variant, more than the harness overhead (~3-4 s here)
VARIANTS = 8


def sleepy(num_classes: int, pretrained: bool = False, sleep: float = SLEEP_S):
    """timm's test_resnet whose training forward also sleeps ``sleep`` seconds: a step of known cost."""
    import timm

    model = timm.create_model("test_resnet", num_classes=num_classes)
    inner = model.forward

    def forward(self, x):
        if self.training:
            time.sleep(sleep)
        return inner(x)

    model.forward = types.MethodType(forward, model)
    return model


@pytest.fixture(scope="module")
def tiny_image_folder(tmp_path_factory):
    """160 training images in 4 classes (5 steps of 32), 48 test images."""
    import numpy as np

    from tests.conftest import _write_split

    root = tmp_path_factory.mktemp("scaling_folder")
    rng = np.random.default_rng(0)
    _write_split(root / "train", 40, rng)
    _write_split(root / "test", 12, rng)
    return root


@pytest.fixture(autouse=True)
def _env(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="module")
def ray_4_gpus():
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, num_gpus=4, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def study(tmp_path: Path, data: Path, sleep: float, epochs: int) -> Path:
    recipe = tiny_recipe(data, **{"train.device": "cpu", "train.epochs": epochs, "data.batch_size": 32})
    recipe["model"] = {"name": "benchmarks.test_ray_scaling:sleepy", "kwargs": {"sleep": sleep}}
    recipe["seeds"] = list(range(VARIANTS))
    return write_recipe(tmp_path / f"study-{sleep}-{epochs}.yaml", recipe)


def timed_run(tmp_path: Path, recipe: Path, name: str, *flags: str) -> float:
    out = tmp_path / name
    start = time.perf_counter()
    code = main(["run", str(recipe), "--results-dir", str(out), "--tracking-uri", f"sqlite:///{out}/mlflow.db",
                 *flags])  # fmt: skip
    elapsed = time.perf_counter() - start
    assert code == 0
    return elapsed


def test_makespan_against_one_worker(tmp_path, tiny_image_folder, ray_4_gpus):
    recipe = study(tmp_path, tiny_image_folder, SLEEP_S, epochs=EPOCHS)  # 160 images / 32 = 5 steps
    timed_run(tmp_path, recipe, "warm", "--executor", "ray", "--gpus-per-variant", "1")  # worker start-up
    makespan = {}
    for k in (1, 2, 4):
        flags = ("--executor", "ray", "--gpus-per-variant", str(4 // k), "--cpus-per-variant", "0.25")
        makespan[k] = timed_run(tmp_path, recipe, f"k{k}", *flags)
    cost = 5 * EPOCHS * SLEEP_S
    ideal = VARIANTS * cost
    print(
        f"\nRay scaling: {VARIANTS} variants of {cost:.1f} s known cost each (sleep) plus the harness's own"
    )
    print(f"{'k':>3} {'makespan s':>11} {'T1/Tk':>6} {'efficiency':>10} {'ideal s':>8}")
    for k, seconds in makespan.items():
        speedup = makespan[1] / seconds
        print(f"{k:>3} {seconds:>11.1f} {speedup:>6.2f} {speedup / k:>10.0%} {ideal / k:>8.1f}")


def test_per_variant_overhead_against_the_local_executor(
    tmp_path, tiny_image_folder, ray_4_gpus, monkeypatch
):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    recipe = study(tmp_path, tiny_image_folder, 0.0, epochs=1)  # as cheap as a variant gets
    timed_run(tmp_path, recipe, "warm", "--executor", "ray", "--gpus-per-variant", "4")
    local = timed_run(tmp_path, recipe, "local")
    ray = timed_run(tmp_path, recipe, "ray", "--executor", "ray", "--gpus-per-variant", "4")  # one at a time
    print(f"\nper variant, one at a time ({VARIANTS} near-free variants): local executor {local / VARIANTS:.2f} s, "
          f"Ray task {ray / VARIANTS:.2f} s, Ray adds {(ray - local) / VARIANTS:+.2f} s")  # fmt: skip
