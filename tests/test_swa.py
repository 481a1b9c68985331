"""SWA: the averaged model is evaluated with BatchNorm statistics recomputed for its own weights
(AveragedModel keeps the buffers it copied at creation), and its state survives a checkpoint."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from bench.engine import checkpoint as ckpt
from tests.recipes import tiny_recipe, write_recipe


def trick(state, name: str):
    return next(t for t in state.tricks if t.name == name)


class Capture:
    def on_start(self, state):
        swa = trick(state, "swa").model
        self.initial_bn = {k: v.clone() for k, v in swa.state_dict().items() if "running" in k}
        self.initial_model = {k: v.clone() for k, v in state.model.state_dict().items()}

    def on_epoch_end(self, state, epoch, record):
        pass

    def on_end(self, state, result):
        self.state, self.result = state, result


def bn_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k.removeprefix("module."): v for k, v in model.state_dict().items() if "running_" in k}


@pytest.mark.slow
def test_swa_model_gets_its_own_batchnorm_statistics(tmp_path, tiny_image_folder):
    from bench.engine.loop import run_variant
    from bench.recipe.load import load_recipe

    recipe = tiny_recipe(tiny_image_folder, **{"train.device": "cpu", "train.epochs": 3,
                                               "train.swa": {"start_epoch": 1, "lr": 0.01}})  # fmt: skip
    [variant] = load_recipe(write_recipe(tmp_path / "r.yaml", recipe)).variants
    cap = Capture()
    result = run_variant(variant, hooks=[cap], run_dir=tmp_path / "run")
    swa, live = trick(cap.state, "swa").model, cap.state.model
    assert int(swa.n_averaged) == 2  # epochs 1 and 2 averaged
    swa_bn, live_bn = bn_buffers(swa), bn_buffers(live)
    assert swa_bn.keys() == live_bn.keys() and swa_bn
    # not the live model's statistics, and not the ones copied at creation
    assert any(not torch.allclose(swa_bn[k], live_bn[k]) for k in swa_bn)
    initial = {k.removeprefix("module."): v for k, v in cap.initial_bn.items()}
    assert all(not torch.equal(swa_bn[k], initial[k]) for k in swa_bn if "running_mean" in k)
    # ... but exactly a fresh recomputation over the training data for the averaged weights
    fresh = copy.deepcopy(swa)
    for module in fresh.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
    cap.state.train_loader.set_epoch(0)
    update_bn(cap.state.train_loader, fresh)
    for key, value in bn_buffers(fresh).items():
        assert torch.allclose(value, swa_bn[key], atol=1e-6), key
    # the averaged model is the one scored
    assert result.metrics["test/acc"] == result.metrics["test/acc_swa"]
    # the averaged weights themselves differ from the live weights
    assert any(not torch.equal(a, b) for a, b in zip(swa.module.parameters(), live.parameters()))
    # and the SWA state (averaged model, n_averaged, SWALR) is in the checkpoint, weights_only-loadable
    saved = ckpt.safe_load(tmp_path / "run" / ckpt.LAST)
    assert int(saved["tricks"]["swa"]["model"]["n_averaged"]) == 2
    assert saved["tricks"]["swa"]["scheduler"]["last_epoch"] == trick(cap.state, "swa").scheduler.last_epoch


def run_swa(tmp_path, tiny_image_folder, **dotted):
    from bench.engine.loop import run_variant
    from bench.recipe.load import load_recipe

    recipe = tiny_recipe(tiny_image_folder, **{"train.device": "cpu", "train.epochs": 3,
                                               "train.swa": {"start_epoch": 1, "lr": 0.01}, **dotted})  # fmt: skip
    [variant] = load_recipe(write_recipe(tmp_path / "r.yaml", recipe)).variants
    cap = Capture()
    result = run_variant(variant, hooks=[cap], run_dir=tmp_path / "run")
    return cap, result


@pytest.mark.slow
def test_swa_phase_keeps_per_layer_lr_ratios(tmp_path, tiny_image_folder):
    cap, result = run_swa(tmp_path, tiny_image_folder, **{"train.optimizer.head_lr_mult": 10.0,
                                                           "train.optimizer.layer_decay": 0.5})  # fmt: skip
    first, swa_phase = result.history[0], result.history[2]  # epoch 2 runs at the SWA LR
    groups = [k for k in first if k.startswith("train/lr/") and "no_decay" not in k]
    assert len(groups) >= 3
    for key in groups:  # every group's LR relative to the base LR is what it was before SWA
        assert swa_phase[key] / swa_phase["train/lr"] == pytest.approx(first[key] / first["train/lr"])
    assert swa_phase["train/lr"] == pytest.approx(0.01)  # swa.lr is the base group's target


@pytest.mark.slow
def test_swa_batchnorm_update_keeps_frozen_norms(tmp_path, tiny_image_folder):
    cap, _ = run_swa(tmp_path, tiny_image_folder, **{"train.freeze": 1})
    from bench.components.freeze import frozen_norm_names

    averaged = trick(cap.state, "swa").model.module.state_dict()
    frozen_norms = frozen_norm_names(cap.state.model)
    frozen = [k for k in averaged if k.split(".running_")[0] in frozen_norms and "running_" in k]
    trained = [k for k in averaged if "running_mean" in k and k not in frozen]
    assert frozen and trained
    for key in frozen:  # the pretrained statistics, untouched by the fine-tuning data
        assert torch.equal(averaged[key], cap.initial_model[key]), key
    assert any(not torch.equal(averaged[k], cap.initial_model[k]) for k in trained)


@pytest.mark.slow
def test_swa_variant_exports_the_averaged_model(tmp_path, tiny_image_folder):
    cap, result = run_swa(tmp_path, tiny_image_folder)
    exported = torch.load(result.weights_path, weights_only=True)
    raw = torch.load(tmp_path / "run" / "model_raw.pt", weights_only=True)
    averaged = trick(cap.state, "swa").model.module.state_dict()
    assert all(torch.equal(exported[k], averaged[k]) for k in averaged)
    live = cap.state.model.state_dict()
    assert all(torch.equal(raw[k], live[k]) for k in live)
    assert any(not torch.equal(exported[k], raw[k]) for k in live if k.endswith("weight"))


def test_averaged_model_alone_keeps_the_live_models_statistics():
    """The trap this file guards against: AveragedModel copies the live model's BN buffers on every
    update, statistics of the live weights, not of the averaged ones."""
    from torch.optim.swa_utils import AveragedModel

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    averaged = AveragedModel(model)
    averaged.update_parameters(model)  # the first update copies the weights
    model.train()
    model(torch.randn(8, 3, 8, 8) + 5)
    with torch.no_grad():
        model[0].weight.mul_(3)  # the live weights move on; the average lags behind
    averaged.update_parameters(model)
    assert torch.equal(averaged.module[1].running_mean, model[1].running_mean)  # copied, not recomputed
    assert not torch.equal(averaged.module[0].weight, model[0].weight)


@pytest.mark.parametrize(("swa", "given"), [({}, "neither"), ({"lr": 0.01, "lr_factor": 0.2}, "both")])
def test_swa_takes_exactly_one_of_lr_factor_and_lr(tmp_path, swa, given):
    from bench.errors import RecipeError
    from bench.recipe.load import load_recipe

    recipe = tiny_recipe(tmp_path / "data", **{"train.swa": {"start_epoch": 1, **swa}})
    with pytest.raises(RecipeError, match=f"exactly one of lr_factor .* or lr .*; {given} given"):
        load_recipe(write_recipe(tmp_path / "r.yaml", recipe))


@pytest.mark.parametrize(
    "optimizer",
    [{"name": "sgd", "lr": 0.05, "momentum": 0.9},
     {"name": "adamw", "lr": 1e-3, "head_lr_mult": 10.0, "layer_decay": 0.5}],
)  # fmt: skip
def test_swa_lr_factor_cuts_every_optimizers_own_lr_alike(optimizer):
    """One lr_factor on a matrix axis: every group of every optimizer anneals to that fraction of its
    own start LR (an absolute swa.lr would cut SGD's LR and raise AdamW's head)."""
    from bench.components.models import build_model
    from bench.components.optimizers import build_optimizer
    from bench.recipe.schema import ModelConfig, OptimizerConfig, SWAConfig
    from bench.tricks.swa import group_targets

    model = build_model(ModelConfig(name="test_resnet"), num_classes=4)
    opt = build_optimizer(model, OptimizerConfig(**optimizer))
    start = [g["lr"] for g in opt.param_groups]
    targets = group_targets(opt, SWAConfig(start_epoch=1, lr_factor=0.2))
    assert targets == pytest.approx([0.2 * lr for lr in start], rel=1e-12)
    absolute = group_targets(opt, SWAConfig(start_epoch=1, lr=0.01))  # still accepted: lr_scale times swa.lr
    assert absolute == pytest.approx([0.01 * g["lr_scale"] for g in opt.param_groups], rel=1e-12)
