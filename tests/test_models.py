"""Models by name: torchvision families with their stages (freezing, per-layer LRs), the
statistics starting weights expect, and bench's own CIFAR networks (airbench94, resnet18_cifar)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import timm
import torch
import torchvision
from torch import nn

from bench.components.freeze import freeze_stages
from bench.components.models import (
    build_model,
    check_model_name,
    model_stages,
    pretrained_stats,
    write_weights_meta,
)
from bench.components.models.airbench import ScaledBiasBatchNorm
from bench.components.models.torchvision_models import replace_head
from bench.components.optimizers import build_param_groups
from bench.errors import CheckpointError, RecipeError
from bench.recipe.schema import ModelConfig, OptimizerConfig
from bench.tricks.freeze import Freeze

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def build(name: str, num_classes: int = 4, **cfg) -> nn.Module:
    return build_model(ModelConfig(name=name, **cfg), num_classes)


def lr_ratios(model: nn.Module, layer_decay: float, head_mult: float) -> dict[str, float]:
    cfg = OptimizerConfig(name="sgd", lr=0.1, head_lr_mult=head_mult, layer_decay=layer_decay)
    return {g["name"]: g["lr"] / 0.1 for g in build_param_groups(model, cfg) if "no_decay" not in g["name"]}


def test_torchvision_names_validate_and_build_with_a_head_for_the_data():
    assert check_model_name("torchvision:resnet18") == "torchvision:resnet18"
    with pytest.raises(ValueError, match="did you mean resnet18"):
        check_model_name("torchvision:resnt18")
    model = build("torchvision:resnet18")
    assert isinstance(model, torchvision.models.ResNet) and model.fc.out_features == 4
    assert build("torchvision:mobilenet_v3_small").classifier[3].out_features == 4
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 4)


def test_torchvision_resnet18_freezes_stem_and_layer1_and_gets_per_stage_lrs():
    model = build("torchvision:resnet18")
    stages = model_stages(model)
    tops = [sorted({n.split(".")[0] for n in s}) for s in stages]
    assert tops == [["bn1", "conv1"], ["layer1"], ["layer2"], ["layer3"], ["layer4"], ["fc"]]

    freeze = Freeze(2)
    freeze.on_model(SimpleNamespace(model=model))  # the trick reads only the model
    frozen_norms = freeze.frozen_norms
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert not any(n.startswith(("conv1", "bn1", "layer1.")) for n in trainable)
    assert {n.split(".")[0] for n in trainable} == {"layer2", "layer3", "layer4", "fc"}
    assert model.bn1 in frozen_norms and model.layer1[1].bn2 in frozen_norms
    assert model.layer2[0].bn1 not in frozen_norms
    model.train()  # as the loop does, before the tricks' epoch start
    freeze.on_epoch_start(None)
    assert not model.bn1.training and model.layer2[0].bn1.training

    ratios = lr_ratios(model, layer_decay=0.5, head_mult=10.0)  # frozen stem/stage1 have no group
    assert ratios == pytest.approx({"stage2": 0.5**3, "stage3": 0.5**2, "stage4": 0.5, "head": 10.0})


def test_torchvision_mobilenet_v3_small_stages_are_its_feature_blocks():
    model = build("torchvision:mobilenet_v3_small")
    stages = model_stages(model)
    assert len(stages) == 15  # features.0 (stem) .. features.12, classifier body, head
    assert all(n.startswith("features.0.") for n in stages[0])
    assert all(n.startswith("features.12.") for n in stages[12])
    assert stages[13] == ["classifier.0.weight", "classifier.0.bias"]
    assert stages[14] == ["classifier.3.weight", "classifier.3.bias"]

    freeze_stages(model, 3)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == set(stages[0] + stages[1] + stages[2])
    ratios = lr_ratios(model, layer_decay=0.8, head_mult=5.0)
    assert ratios["head"] == pytest.approx(5.0)
    assert ratios["stage13"] == pytest.approx(0.8) and ratios["stage3"] == pytest.approx(0.8**11)
    assert "stem" not in ratios and "stage2" not in ratios


def test_efficientnet_and_vit_stages():
    eff = model_stages(build("torchvision:efficientnet_b0"))
    assert len(eff) == 10 and eff[-1] == ["classifier.1.weight", "classifier.1.bias"]
    vit = model_stages(build("torchvision:vit_b_32"))
    assert set(vit[0]) == {"class_token", "conv_proj.weight", "conv_proj.bias", "encoder.pos_embedding"}
    assert all(n.startswith("encoder.layers.encoder_layer_0.") for n in vit[1])
    assert vit[-2] == ["encoder.ln.weight", "encoder.ln.bias"] and vit[-1] == [
        "heads.head.weight",
        "heads.head.bias",
    ]
    assert len(vit) == 15  # stem, 12 encoder layers, final norm, head


def test_pretrained_head_is_replaced_or_refused_never_left_at_1000_classes():
    imagenet_resnet = torchvision.models.resnet18()  # the architecture the DEFAULT weights load into
    replace_head(imagenet_resnet, 7, "resnet18")
    assert imagenet_resnet.fc.out_features == 7
    with pytest.raises(RecipeError, match="squeezenet1_0.*Conv2d, not a Linear") as err:
        replace_head(torchvision.models.squeezenet1_0(), 7, "squeezenet1_0")
    assert err.value.key == "model.name"


def test_pretrained_stats_come_from_the_weights_without_downloading(tmp_path):
    assert pretrained_stats(ModelConfig(name="torchvision:resnet18", pretrained=True)) == IMAGENET
    assert pretrained_stats(ModelConfig(name="torchvision:resnet18")) is None
    timm_model = timm.create_model("resnet18", pretrained=False)  # carries pretrained_cfg regardless
    assert pretrained_stats(ModelConfig(name="resnet18", pretrained=True), timm_model) == IMAGENET
    assert pretrained_stats(ModelConfig(name="resnet18"), timm_model) is None  # trained from scratch
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False)
    assert pretrained_stats(ModelConfig(name="vit_tiny_patch16_224", pretrained=True), vit) == (
        (0.5, 0.5, 0.5),
        (0.5, 0.5, 0.5),
    )

    weights = tmp_path / "model.pt"
    torch.save(timm_model.state_dict(), weights)
    from_file = ModelConfig(name="resnet18", pretrained=True, weights=str(weights))
    assert pretrained_stats(from_file, timm_model) is None  # a file of unknown origin: no claim
    write_weights_meta(weights, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26), "train")
    assert json.loads((tmp_path / "model.pt.json").read_text())["normalize"] == "train"
    assert pretrained_stats(from_file, timm_model) == ((0.49, 0.48, 0.45), (0.25, 0.24, 0.26))
    (tmp_path / "model.pt.json").write_text('{"mean": [0.5, 0.5, 0.5], "std": [0, 1, 1]}')
    with pytest.raises(CheckpointError, match="'std' must be a list of 1 or 3 positive numbers"):
        pretrained_stats(from_file, timm_model)


def test_airbench94_whitens_from_its_first_training_batch_once():
    torch.manual_seed(0)
    model = build("airbench94", 10)
    assert sum(p.numel() for p in model.parameters()) == 1_972_792  # airbench94's published size
    assert [len(s) > 0 for s in model_stages(model)] == [True] * 5
    assert not model.whiten.weight.requires_grad and not model.block1.norm1.weight.requires_grad
    images = torch.randn(64, 3, 32, 32) * torch.tensor([1.0, 2.0, 0.5]).view(1, 3, 1, 1)
    model.eval()
    model(images)
    assert not model.whiten.initialized  # evaluation never initialises
    model.train()
    assert model(images).shape == (64, 10) and model.whiten.initialized
    # Whitened patches: the positive half of the filters decorrelates them to unit variance.
    patches = model.whiten._conv_forward(images, model.whiten.weight, None)[:, :12]
    cov = torch.cov(patches.permute(1, 0, 2, 3).reshape(12, -1))
    assert torch.allclose(cov, torch.eye(12), atol=0.05)

    fresh = build("airbench94", 10)
    fresh.load_state_dict(model.state_dict())
    fresh.train()
    fresh(torch.randn(8, 3, 32, 32) * 10)  # different data must not re-whiten loaded weights
    assert torch.equal(fresh.whiten.weight, model.whiten.weight)


def test_scaled_bias_batchnorm_gives_the_bias_a_64x_sgd_step():
    torch.manual_seed(0)
    plain, scaled = nn.BatchNorm2d(4), ScaledBiasBatchNorm(4, bias_lr_scale=64.0)
    x = torch.randn(16, 4, 5, 5)
    target = torch.randn(16, 4, 5, 5)
    for bn in (plain, scaled):
        opt = torch.optim.SGD([bn.bias], lr=0.01, momentum=0.9, nesterov=True, weight_decay=0.1)
        for _ in range(3):
            opt.zero_grad()
            ((bn(x) - target) ** 2).mean().backward()
            opt.step()
    plain_ref = nn.BatchNorm2d(4)
    ref_opt = torch.optim.SGD([plain_ref.bias], lr=0.64, momentum=0.9, nesterov=True, weight_decay=0.1 / 64)
    for _ in range(3):
        ref_opt.zero_grad()
        ((plain_ref(x) - target) ** 2).mean().backward()
        ref_opt.step()
    # airbench: lr x 64 for biases with the decay per step unchanged (lr * wd constant).
    assert torch.allclose(scaled.bias * scaled.bias_factor, plain_ref.bias, atol=1e-6)
    assert not torch.allclose(plain.bias, plain_ref.bias, atol=1e-3)


def test_resnet18_cifar_keeps_32px_into_layer1_and_refuses_imagenet_weights():
    model = build("resnet18_cifar", 10)
    seen = {}
    model.layer1.register_forward_hook(lambda m, i, o: seen.update(shape=o.shape))
    model(torch.randn(2, 3, 32, 32))
    assert seen["shape"] == (2, 64, 32, 32)
    assert model.conv1.kernel_size == (3, 3) and isinstance(model.maxpool, nn.Identity)
    assert len(model_stages(model)) == 6
    with pytest.raises(RecipeError, match="resnet18_cifar has no pretrained weights"):
        build("resnet18_cifar", 10, pretrained=True)


@pytest.mark.slow
def test_one_epoch_of_torchvision_resnet18_through_the_engine(tmp_path, tiny_image_folder):
    from bench.engine.loop import run_variant
    from bench.recipe.load import load_recipe
    from tests.recipes import tiny_recipe, write_recipe

    recipe = tiny_recipe(
        tiny_image_folder,
        **{"model.name": "torchvision:resnet18", "train.epochs": 1, "train.freeze": 1, "train.device": "cpu",
           "train.optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "layer_decay": 0.7, "head_lr_mult": 2.0}},
    )  # fmt: skip
    variant = load_recipe(write_recipe(tmp_path / "tv.yaml", recipe)).variants[0]
    result = run_variant(variant, run_dir=tmp_path / "run")
    assert result.status == "finished"
    assert math.isfinite(result.metrics["train/loss"]) and "test/acc" in result.metrics
    lrs = result.history[0]
    assert "train/lr/stem" not in lrs  # frozen: no param group
    assert lrs["train/lr/head"] / lrs["train/lr/stage4"] == pytest.approx(2.0 / 0.7)
    state = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    assert state["fc.weight"].shape == (4, 512)
