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


class Capture:
    def on_start(self, state):
        self.initial_bn = {k: v.clone() for k, v in state.swa.model.state_dict().items() if "running" in k}

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
    swa, live = cap.state.swa.model, cap.state.model
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
    assert "test/acc_swa" in result.metrics and 0.0 <= result.metrics["test/acc_swa"] <= 1.0
    # the averaged weights themselves differ from the live weights
    assert any(not torch.equal(a, b) for a, b in zip(swa.module.parameters(), live.parameters()))
    # and the SWA state (averaged model, n_averaged, SWALR) is in the checkpoint, weights_only-loadable
    saved = ckpt.safe_load(tmp_path / "run" / ckpt.LAST)
    assert int(saved["swa"]["model"]["n_averaged"]) == 2
    assert saved["swa"]["scheduler"]["last_epoch"] == cap.state.swa.scheduler.last_epoch


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
