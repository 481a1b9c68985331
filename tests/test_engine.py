"""The training loop on real (tiny) data: it learns, measures, and runs every precision and SWA."""

from __future__ import annotations

import math

import pytest
import torch

from bench.engine.errors import VariantSkipped
from bench.engine.loop import run_variant
from bench.recipe.load import load_recipe
from tests.recipes import tiny_recipe, write_recipe

pytestmark = pytest.mark.slow


def variant(tmp_path, root, **dotted):
    return load_recipe(write_recipe(tmp_path / "r.yaml", tiny_recipe(root, **dotted))).variants[0]


def test_a_variant_learns_and_reports_every_metric(tmp_path, tiny_image_folder):
    result = run_variant(
        variant(tmp_path, tiny_image_folder, **{"train.epochs": 3}), run_dir=tmp_path / "run"
    )
    m = result.metrics
    assert result.status == "finished"
    assert m["test/acc"] > 0.5  # 4 classes: chance is 0.25
    assert m["test/acc_oracle"] >= m["test/acc"]
    assert m["throughput/train_img_s"] > 0 and m["throughput/eval_img_s"] > 0
    assert m["memory/peak_rss_mb"] > 0 and m["time/wall_s"] > 0
    assert 0 < m["params/trainable"] == m["params/total"]
    assert [h["epoch"] for h in result.history] == [0, 1, 2]
    assert all("train/lr/all" in h and "train/loss" in h for h in result.history)
    assert result.history[-1]["train/lr"] < result.history[0]["train/lr"]  # cosine decays
    assert (tmp_path / "run" / "model.pt").exists() and (tmp_path / "run" / "last.ckpt").exists()


def test_freezing_reduces_trainable_parameters(tmp_path, tiny_image_folder):
    result = run_variant(variant(tmp_path, tiny_image_folder, **{"train.epochs": 1, "train.freeze": 3}))
    assert result.metrics["params/trainable"] < result.metrics["params/total"]


def test_fp16_without_cuda_is_skipped_with_a_reason(tmp_path, tiny_image_folder):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(VariantSkipped, match="amp_fp16 needs a CUDA device"):
        run_variant(variant(tmp_path, tiny_image_folder, **{"train.precision": "amp_fp16"}))


def test_bf16_autocast_trains(tmp_path, tiny_image_folder, monkeypatch):
    monkeypatch.setenv("BENCH_EMULATED_BF16", "run")  # trained even where the CPU emulates bf16
    result = run_variant(
        variant(tmp_path, tiny_image_folder, **{"train.precision": "amp_bf16", "train.epochs": 2})
    )
    assert math.isfinite(result.metrics["train/loss"]) and result.metrics["test/acc"] > 0.25


def test_swa_records_both_the_averaged_and_the_raw_model(tmp_path, tiny_image_folder):
    swa = {"start_epoch": 1, "lr": 0.01, "anneal_epochs": 1}
    result = run_variant(variant(tmp_path, tiny_image_folder, **{"train.swa": swa, "train.epochs": 3}))
    m = result.metrics  # scored on the model SWA delivers; the trained weights' own score kept beside it
    assert m["test/acc"] == m["test/acc_swa"] and "test/acc_raw" in m
    assert result.history[-1]["train/lr"] == pytest.approx(0.01)  # SWALR holds the SWA LR


def test_onecycle_per_layer_and_grad_clip_and_label_smoothing_run(tmp_path, tiny_image_folder):
    dotted = {
        "train.scheduler": {"name": "onecycle"},
        "train.optimizer": {"name": "adamw", "lr": 3e-3, "head_lr_mult": 10.0, "layer_decay": 0.5},
        "train.grad_clip": 1.0,
        "train.label_smoothing": 0.1,
    }
    result = run_variant(variant(tmp_path, tiny_image_folder, **dotted))
    first = result.history[0]
    assert first["train/lr/head"] == pytest.approx(20 * first["train/lr/stage4"])  # 10 / 0.5
    assert result.metrics["test/acc"] > 0.25


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_amp_fp16_on_cuda_uses_a_grad_scaler_and_reports_gpu_memory(tmp_path, tiny_image_folder):
    result = run_variant(
        variant(tmp_path, tiny_image_folder, **{"train.precision": "amp_fp16", "train.device": "cuda"})
    )
    assert result.metrics["memory/peak_gpu_mb"] > 0 and result.metrics["test/acc"] > 0.25


def test_test_set_can_be_held_back_until_the_last_epoch(tmp_path, tiny_image_folder):
    dotted = {"train.epochs": 2, "train.test_every_epoch": False, "data.val_size": 16}
    result = run_variant(variant(tmp_path, tiny_image_folder, **dotted))
    assert "test/acc" not in result.history[0] and "val/acc" in result.history[0]
    assert "test/acc" in result.history[-1] and result.metrics["test/acc"] == result.history[-1]["test/acc"]
