"""Freezing, per-layer param groups, heads and weights: the fine-tuning mechanics users rely on."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import timm
import torch
import torchvision
from torch import nn

from bench.components.freeze import freeze_stages
from bench.components.models import build_model, check_model_name, load_weights, model_stages
from bench.components.optimizers import build_optimizer, build_param_groups, check_optimizer
from bench.errors import CheckpointError, RecipeError
from bench.recipe.schema import ModelConfig, OptimizerConfig
from bench.tricks.freeze import Freeze


def tiny(num_classes: int = 3) -> nn.Module:
    return timm.create_model("test_resnet", num_classes=num_classes)


@pytest.mark.parametrize("factory", [tiny, lambda: torchvision.models.resnet18(num_classes=3)])
def test_stages_run_stem_first_and_head_last(factory):
    stages = model_stages(factory())
    assert len(stages) == 6  # stem, layer1..4, head
    assert stages[0][0].startswith("conv1") and all(n.startswith("fc") for n in stages[-1])
    assert all(stages)


def test_frozen_stages_leave_the_optimizer_and_their_batchnorm_stays_put():
    torch.manual_seed(0)
    model = tiny()
    freeze = Freeze(2)
    freeze.on_model(SimpleNamespace(model=model))  # the trick reads only the model
    stages = model_stages(model)
    frozen = set(stages[0] + stages[1])
    params = dict(model.named_parameters())
    assert all(not params[n].requires_grad for n in frozen)
    assert all(p.requires_grad for n, p in params.items() if n not in frozen)
    opt = build_optimizer(model, OptimizerConfig(name="sgd", lr=0.1))
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert not any(id(params[n]) in in_opt for n in frozen)

    bn = model.conv1[1]  # stem BatchNorm (frozen)
    live_bn = model.layer3[0].bn1  # not frozen
    before, live_before = bn.running_mean.clone(), live_bn.running_mean.clone()
    model.train()  # as the loop does, before the tricks' epoch start
    freeze.on_epoch_start(None)
    assert model.training and not bn.training and live_bn.training
    model(torch.randn(8, 3, 32, 32) * 3 + 1).sum().backward()
    opt.step()
    assert torch.equal(bn.running_mean, before)  # frozen statistics did not move
    assert not torch.equal(live_bn.running_mean, live_before)


def test_head_is_never_frozen_and_too_deep_freeze_is_a_clear_error():
    model = tiny()
    freeze_stages(model, 5)
    assert model.fc.weight.requires_grad
    with pytest.raises(RecipeError, match=r"allowed: 0\.\.5"):
        freeze_stages(tiny(), 6)


def test_per_layer_lrs_decay_from_the_head_and_norm_bias_get_no_weight_decay():
    cfg = OptimizerConfig(name="adamw", lr=1e-3, weight_decay=0.05, head_lr_mult=10.0, layer_decay=0.5)
    groups = {g["name"]: g for g in build_param_groups(tiny(), cfg)}
    assert groups["head"]["lr"] == pytest.approx(1e-2)
    assert groups["stage4"]["lr"] == pytest.approx(1e-3 * 0.5)
    assert groups["stem"]["lr"] == pytest.approx(1e-3 * 0.5**5)
    assert groups["stage4_no_decay"]["weight_decay"] == 0.0 and groups["stage4"]["weight_decay"] == 0.05
    assert all(p.ndim <= 1 for p in groups["stage2_no_decay"]["params"])


def test_plain_optimizer_has_two_groups_and_unknown_argument_is_rejected():
    groups = build_param_groups(tiny(), OptimizerConfig(name="sgd", lr=0.1))
    assert sorted(g["name"] for g in groups) == ["all", "all_no_decay"]
    with pytest.raises(ValueError, match="momentun"):
        check_optimizer("sgd", {"momentun": 0.9})


def test_head_is_sized_for_the_data_and_local_weights_load_except_the_head(tmp_path):
    source = tiny(5)
    torch.save(source.state_dict(), tmp_path / "w.pt")
    model = build_model(ModelConfig(name="test_resnet", weights=str(tmp_path / "w.pt")), num_classes=3)
    assert model.fc.out_features == 3
    assert torch.equal(model.conv1[0].weight, source.conv1[0].weight)


def test_weights_for_another_architecture_are_refused(tmp_path):
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pt")
    with pytest.raises(CheckpointError, match="another architecture"):
        load_weights(tiny(), tmp_path / "r18.pt")


def test_pickled_code_in_a_weights_file_is_refused(tmp_path):
    torch.save({"fc.weight": torch.zeros(1), "evil": object()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused|pickled"):
        load_weights(tiny(), tmp_path / "evil.pt")


def test_pretrained_download_offline_says_how_to_use_a_local_file(monkeypatch, tmp_path):
    import huggingface_hub.constants

    # the hub reads HF_HUB_OFFLINE once, at import; without it the client retries for ~45 s here
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(CheckpointError, match="model.weights") as info:
        build_model(ModelConfig(name="test_resnet", pretrained=True), num_classes=3)
    # HF_HUB_OFFLINE=1 was already set: advising to set it sent users in a circle
    assert "set HF_HUB_OFFLINE=1" not in str(info.value) and "HF_HUB_OFFLINE is set" in str(info.value)


def test_offline_pretrained_recipe_fails_once_before_any_run_starts(tmp_path, tiny_image_folder):
    """Offline, each run would wait out the hub client's retries (~45 s) and fail the same way:
    108 failed runs of cifar10_resnet after more than an hour. The weights are fetched once, up
    front, and their failure stops the command with the fix, before any run is recorded."""
    from tests.helpers import all_runs, children, run_bench, table
    from tests.recipes import tiny_recipe, write_recipe

    recipe = write_recipe(tmp_path / "tiny.yaml", tiny_recipe(
        tiny_image_folder, matrix={"train.optimizer.lr": [0.1, 0.05, 0.02]}, **{"model.pretrained": True}))  # fmt: skip
    rc, err = run_bench(tmp_path, recipe, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"),
                        TORCH_HOME=str(tmp_path / "torch"))  # fmt: skip
    assert rc == 2, err
    assert err.count("model.pretrained: could not download pretrained weights for 'test_resnet'") == 1, err
    assert f"{recipe}: model.pretrained" in err and "model.weights: PATH" in err
    assert children(all_runs(tmp_path)) == []  # no run started, none recorded as failed
    assert set(table(tmp_path)["status"]) == {"pending"}


def user_model(num_classes: int, pretrained: bool = False, width: int = 8) -> nn.Module:
    """A user's own model factory, named in a recipe by import path."""
    return nn.Sequential(
        nn.Conv2d(3, width, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes)
    )


def test_user_components_by_import_path(tmp_path, tiny_image_folder):
    from bench.engine.loop import run_variant
    from bench.recipe.load import load_recipe
    from tests.recipes import tiny_recipe, write_recipe

    recipe = tiny_recipe(
        tiny_image_folder,
        **{"model.name": "tests.test_components:user_model", "model.kwargs": {"width": 4},
           "train.loss": "torch.nn:CrossEntropyLoss", "train.epochs": 1},
    )  # fmt: skip
    variant = load_recipe(write_recipe(tmp_path / "r.yaml", recipe)).variants[0]
    result = run_variant(variant)
    assert result.metrics["params/total"] == 3 * 4 * 9 + 4 + 4 * 4 + 4  # conv + head of the user's model


def test_unknown_import_path_names_the_module():
    with pytest.raises(ValueError, match="no_such_pkg"):
        check_model_name("no_such_pkg.models:net")
