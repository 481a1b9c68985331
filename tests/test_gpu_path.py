"""The GPU path: no host-device sync per step (checked under CUDA's sync debug mode), torch.compile
measured apart from throughput, memory without the resident data, system metrics per run. CUDA
tests skip cleanly without a GPU; compile and system metrics are checked on CPU too."""

from __future__ import annotations

import pytest
import torch

from bench.recipe.load import load_recipe
from tests.recipes import tiny_recipe, write_recipe

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def one_variant(tmp_path, root, **dotted):
    [variant] = load_recipe(write_recipe(tmp_path / "r.yaml", tiny_recipe(root, **dotted))).variants
    return variant


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["fp32", "amp_bf16", "amp_fp16"])
def test_training_steps_never_sync_with_the_host(tmp_path, tiny_image_folder, precision):
    from bench.engine.measure import Throughput
    from bench.engine.state import build_state

    variant = one_variant(tmp_path, tiny_image_folder, **{"train.device": "cuda", "train.precision": precision,
                          "train.grad_clip": 1.0, "train.scheduler": {"name": "onecycle"}, "data.batch_size": 8})  # fmt: skip
    state = build_state(variant)
    from bench.engine.loop import after_optimizer_step

    batches = [b for _, b in zip(range(20), state.train_loader)]  # loading may sync; stepping must not
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(15):  # 300 steps
            for i, (x, y) in enumerate(batches):
                with state.precision.autocast():
                    loss = state.criterion(state.forward(x), y)
                state.optimizer.zero_grad(set_to_none=True)
                state.precision.backward(loss)
                for trick in state.tricks:
                    trick.after_backward(state)
                state.schedule.begin_step()
                stepped = state.precision.step(state.optimizer)
                after_optimizer_step(state, stepped, i)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert state.step == 300 and Throughput  # noqa: B015


@cuda
@pytest.mark.cuda
@pytest.mark.slow
def test_cuda_memory_excludes_the_resident_data(tmp_path, tiny_image_folder):
    from bench.engine.loop import run_variant

    result = run_variant(
        one_variant(tmp_path, tiny_image_folder, **{"train.device": "cuda", "train.epochs": 1})
    )
    m = result.metrics
    assert m["memory/data_gpu_mb"] > 0 and m["memory/peak_gpu_mb"] > 0


@pytest.mark.slow
def test_compile_runs_on_cpu_and_is_measured_apart(tmp_path, tiny_image_folder):
    from bench.engine.loop import run_variant

    variant = one_variant(tmp_path, tiny_image_folder, **{"train.device": "cpu", "train.epochs": 1,
                          "train.compile": True, "train.warmup_steps": 2})  # fmt: skip
    result = run_variant(variant)
    assert result.status == "finished"
    assert result.metrics["time/compile_s"] > 0  # compiling the first step, recorded on its own
    assert result.metrics["test/acc"] > 0.25


def test_compile_failure_fails_the_variant_with_the_reason():
    from bench.tricks.compile import CompileFailed, _Compiled

    class Broken(torch.nn.Module):
        def forward(self, x):
            return torch.ops.aten.this_op_does_not_exist(x)

    compiled = _Compiled(Broken(), None)
    with pytest.raises((CompileFailed, AttributeError)) as err:  # never a silent eager fallback
        compiled(torch.ones(2))
    assert "torch.compile failed" in str(err.value) or "this_op_does_not_exist" in str(err.value)


@pytest.mark.slow
def test_system_metrics_are_logged_per_run(tmp_path, tiny_image_folder):
    from mlflow.tracking import MlflowClient

    from tests.helpers import bench_cli as bench
    from tests.helpers import fresh_store

    recipe = tiny_recipe(tiny_image_folder, **{"train.device": "cpu", "train.epochs": 8, "data.batch_size": 8,
                                                "tracking.system_metrics": True})  # fmt: skip
    path = write_recipe(tmp_path / "r.yaml", recipe)
    env_interval = "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"
    import os

    os.environ[env_interval] = "0.2"
    try:
        fresh_store(tmp_path / "res" / "mlflow.db")  # the default store
        proc = bench("run", str(path), "--results-dir", str(tmp_path / "res"))
    finally:
        os.environ.pop(env_interval)
    assert proc.returncode == 0, proc.stderr
    client = MlflowClient(f"sqlite:///{tmp_path / 'res' / 'mlflow.db'}")
    [exp] = [e for e in client.search_experiments() if e.name == "tiny"]
    [child] = [r for r in client.search_runs([exp.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    assert any(k.startswith("system/cpu_utilization") for k in child.data.metrics), sorted(child.data.metrics)
