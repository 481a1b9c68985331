"""A user's own model and loss, named by import path, without hidden contracts: the recipe's folder is
on the import path (no PYTHONPATH by hand), a factory gets only the arguments it takes, a loss
takes arguments, mismatches fail validation (exit 2, nothing recorded) with the contract in the
message, and editing the module retrains (its source is part of the run key, tag
``bench.input.code``). The registry's focal and Dice losses against hand computations."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from bench.cli import main
from bench.components.losses import LOSSES, DiceLoss, FocalLoss, build_loss
from bench.execution import identity
from bench.recipe.load import load_recipe
from bench.recipe.matrix import stable_hash
from tests.helpers import fresh_store
from tests.recipes import tiny_recipe, write_recipe

REPO = Path(__file__).resolve().parent.parent

MODELS_PY = """
from torch import nn

WIDTH = {width}


def net(num_classes):  # no pretrained=: bench passes only what a factory takes
    return nn.Sequential(nn.Conv2d(3, WIDTH, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(WIDTH, num_classes))


def headless(width=4):  # no num_classes=: the head cannot be sized
    return nn.Conv2d(3, width, 3)
"""

LOSSES_PY = """
from torch import nn


class Plain(nn.Module):  # takes no label_smoothing
    def forward(self, logits, target):
        return nn.functional.cross_entropy(logits, target)


class Weighted(nn.Module):
    def __init__(self, scale=1.0):
        super().__init__()
        self.scale = scale

    def forward(self, logits, target):
        return self.scale * nn.functional.cross_entropy(logits, target)
"""


@pytest.fixture
def isolated_path(monkeypatch):
    """Validation puts the recipe's folder on sys.path and PYTHONPATH: undo it after each test."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    monkeypatch.delenv("BENCH_IMPORT_PATHS", raising=False)


def user_folder(tmp_path: Path, suffix: str, width: int = 4) -> Path:
    folder = tmp_path / "project"
    folder.mkdir(exist_ok=True)
    (folder / f"mymodels_{suffix}.py").write_text(MODELS_PY.format(width=width))
    (folder / f"mylosses_{suffix}.py").write_text(LOSSES_PY)
    return folder


# --- the registry's losses --------------------------------------------------------------------------

PROBS = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]])
TARGET = torch.tensor([0, 2])


def test_focal_loss_by_hand_and_gamma_zero_is_cross_entropy():
    logits = PROBS.log()  # softmax(log p) = p
    by_hand = -((1 - 0.7) ** 2 * math.log(0.7) + (1 - 0.3) ** 2 * math.log(0.3)) / 2
    assert FocalLoss(gamma=2.0)(logits, TARGET).item() == pytest.approx(by_hand, rel=1e-5)
    x, y = torch.randn(16, 5), torch.randint(0, 5, (16,))
    assert torch.allclose(FocalLoss(gamma=0.0)(x, y), F.cross_entropy(x, y), atol=1e-6)
    smoothed = F.cross_entropy(x, y, label_smoothing=0.1)
    assert torch.allclose(FocalLoss(gamma=0.0, label_smoothing=0.1)(x, y), smoothed, atol=1e-6)


def test_dice_loss_by_hand():
    # per class over the batch, smooth 1: (2 * sum p q + 1) / (sum p + sum q + 1)
    dice = [(2 * 0.7 + 1) / (0.8 + 1 + 1), (0 + 1) / (0.8 + 0 + 1), (2 * 0.3 + 1) / (0.4 + 1 + 1)]
    assert DiceLoss()(PROBS.log(), TARGET).item() == pytest.approx(1 - sum(dice) / 3, rel=1e-5)
    perfect = torch.tensor([[20.0, 0, 0], [0, 0, 20.0]])
    assert DiceLoss(smooth=0.0)(perfect, TARGET).item() == pytest.approx(1 / 3, abs=1e-6)  # class 1 absent


def test_losses_are_registered_and_take_their_arguments_from_the_recipe(tmp_path):
    assert {"focal", "dice"} <= set(LOSSES.names())
    recipe = tiny_recipe(
        tmp_path, **{"train.loss": {"name": "focal", "gamma": 0.5}, "train.label_smoothing": 0.1}
    )
    [variant] = load_recipe(write_recipe(tmp_path / "r.yaml", recipe)).variants
    loss = build_loss(variant.body.train.loss, variant.body.train.label_smoothing)
    assert isinstance(loss, FocalLoss) and loss.gamma == 0.5 and loss.label_smoothing == 0.1
    plain = load_recipe(write_recipe(tmp_path / "p.yaml", tiny_recipe(tmp_path))).variants[0]
    assert plain.body.train.loss == "cross_entropy"  # a name stays a name: existing run keys hold


# --- validation: the contract in the message, exit 2, nothing recorded ------------------------------


@pytest.mark.parametrize(
    ("dotted", "expected"),
    [
        ({"model.name": "mymodels_{s}:headless"}, ["num_classes", "factory(num_classes=N"]),
        ({"model.name": "mymodels_{s}:net", "model.pretrained": True}, ["model.pretrained", "pretrained="]),
        ({"train.loss": "mylosses_{s}:Plain", "train.label_smoothing": 0.1}, ["label_smoothing="]),
        ({"train.loss": {"name": "focal", "gama": 2}}, ["does not take argument 'gama'", "gamma"]),
        ({"train.loss": {"name": "mylosses_{s}:Weighted", "weight": 2}}, ["'weight'", "scale"]),
    ],
)
def test_user_component_mismatch_fails_validation_with_the_contract(
    tmp_path, tiny_image_folder, isolated_path, capsys, dotted, expected
):
    suffix = f"c{abs(hash(str(dotted))) % 10**8}"
    folder = user_folder(tmp_path, suffix)
    dotted = {k: (v.format(s=suffix) if isinstance(v, str) else v) for k, v in dotted.items()}
    if isinstance(dotted.get("train.loss"), dict):
        dotted["train.loss"] = {
            k: (v.format(s=suffix) if isinstance(v, str) else v) for k, v in dotted["train.loss"].items()
        }
    recipe = write_recipe(
        folder / "r.yaml", tiny_recipe(tiny_image_folder, **{"train.device": "cpu", **dotted})
    )
    results = tmp_path / "results"
    code = main(
        [
            "run",
            str(recipe),
            "--results-dir",
            str(results),
            "--tracking-uri",
            f"sqlite:///{tmp_path / 'm.db'}",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2, err
    assert all(text in err for text in expected), err
    assert not (tmp_path / "m.db").exists() and not results.exists()  # validated before anything is recorded


def test_user_loss_with_arguments_and_factory_without_pretrained_validate(tmp_path, isolated_path):
    folder = user_folder(tmp_path, "ok")
    recipe = tiny_recipe(
        tmp_path,
        **{"model.name": "mymodels_ok:net", "train.loss": {"name": "mylosses_ok:Weighted", "scale": 2.0}},
    )
    assert main(["run", str(write_recipe(folder / "r.yaml", recipe)), "--dry-run"]) == 0


# --- identity: the user's code is part of the run key ----------------------------------------------


def test_editing_a_user_module_changes_the_run_key_registry_names_do_not(
    tmp_path, tiny_image_folder, isolated_path
):
    from bench.components.user_code import add_import_paths

    folder = user_folder(tmp_path, "key")
    recipe = write_recipe(
        folder / "r.yaml", tiny_recipe(tiny_image_folder, **{"model.name": "mymodels_key:net"})
    )
    add_import_paths(recipe)

    def keyed():
        loaded, inputs = identity.with_input_fingerprints(load_recipe(recipe))
        [variant] = loaded.variants
        return variant.run_key, inputs[variant.run_key]

    first, tags = keyed()
    assert tags[identity.CODE_TAG].startswith("mymodels_key=sha256:")
    assert keyed()[0] == first  # stable while the file is unchanged
    (folder / "mymodels_key.py").write_text(MODELS_PY.format(width=6))
    second, new_tags = keyed()
    assert second != first and new_tags[identity.CODE_TAG] != tags[identity.CODE_TAG]

    plain = write_recipe(tmp_path / "plain.yaml", tiny_recipe(tiny_image_folder))  # registry names only
    [variant] = load_recipe(plain).variants
    loaded, inputs = identity.with_input_fingerprints(load_recipe(plain))
    key = loaded.variants[0].run_key
    assert inputs[key] == {identity.DATA_TAG: inputs[key][identity.DATA_TAG]}  # no code tag
    assert key == stable_hash({"config_key": variant.run_key, "inputs": inputs[key]}, 16)  # as before


# --- end to end: a user's model beside the recipe, no PYTHONPATH, edited between runs ---------------


@pytest.mark.slow
def test_model_beside_the_recipe_trains_and_an_edit_retrains(tmp_path, tiny_image_folder):
    from mlflow.tracking import MlflowClient

    folder = user_folder(tmp_path, "e2e")
    recipe = write_recipe(
        folder / "r.yaml",
        tiny_recipe(tiny_image_folder, name="mine", **{"model.name": "mymodels_e2e:net", "train.epochs": 1,
                                                       "train.device": "cpu",
                                                       "train.loss": {"name": "focal", "gamma": 1.0}}),
    )  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    uri = fresh_store(tmp_path / "mlflow.db")
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # bench's tree only: not the recipe's folder
    command = [sys.executable, "-m", "bench.cli", "run", str(recipe), "--results-dir", str(tmp_path / "res"),
               "--tracking-uri", uri]  # fmt: skip

    def bench_run() -> str:
        done = subprocess.run(command, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stderr

    bench_run()
    # nothing where the command was started: MLflow's default store (./mlflow.db) was created there
    # by a flush of the wrong store, every variant's process opening it
    assert not (elsewhere / "mlflow.db").exists()
    (folder / "mymodels_e2e.py").write_text(MODELS_PY.format(width=6))
    second = bench_run()
    assert "skipped" not in second  # the edited model trains again

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("mine")
    runs = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("bench.kind") != "recipe"]
    assert sorted(r.data.tags["bench.status"] for r in runs) == ["finished", "finished"]
    codes = {r.data.tags[identity.CODE_TAG] for r in runs}
    assert len(codes) == 2 and all(c.startswith("mymodels_e2e=sha256:") for c in codes)
    assert len({r.data.tags["bench.run_key"] for r in runs}) == 2
    params = sorted(r.data.metrics["params/total"] for r in runs)
    assert params == [3 * 4 * 9 + 4 + 4 * 4 + 4, 3 * 6 * 9 + 6 + 6 * 4 + 4]  # each run used its code

    # the report reads the variant by its latest run, and its provenance says which code produced it
    assert main(["report", str(recipe), "--results-dir", str(tmp_path / "res"), "--tracking-uri", uri]) == 0
    provenance = (tmp_path / "res" / "mine" / "report" / "provenance.csv").read_text()
    old, new = (r.data.tags[identity.CODE_TAG] for r in sorted(runs, key=lambda r: r.info.start_time))
    assert new in provenance and old not in provenance
