"""``bench plan``: the planned LR of every param group at every step equals what the torch
scheduler class itself gives when stepped per its policy, and known-bad setups are flagged."""

from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch.optim import lr_scheduler as lrs

from bench.cli import main as cli
from bench.components.schedulers import SCHEDULERS
from bench.plan.schedule import plan_recipe, plan_variant, steps_per_epoch
from bench.recipe.load import load_recipe
from tests.recipes import tiny_recipe, write_recipe

EPOCHS, SUBSET, BATCH = 4, 100, 32
SPE = SUBSET // BATCH  # the loader drops the last partial batch: 3 steps per epoch
LR = 0.05

# name -> (recipe kwargs, reference torch scheduler factory, policy)
CASES = {
    "lambda": (
        {"lr_lambda": "linear_decay"},
        lambda o: lrs.LambdaLR(o, lambda e: 1 - min(e, EPOCHS) / EPOCHS),
        "epoch",
    ),
    "multiplicative": (
        {"lr_lambda": "constant_factor", "lambda_kwargs": {"gamma": 0.8}},
        lambda o: lrs.MultiplicativeLR(o, lambda e: 0.8),
        "epoch",
    ),
    "step": ({"step_size": 2, "gamma": 0.5}, lambda o: lrs.StepLR(o, step_size=2, gamma=0.5), "epoch"),
    "multistep": (
        {"milestones": [1, 3], "gamma": 0.1},
        lambda o: lrs.MultiStepLR(o, milestones=[1, 3], gamma=0.1),
        "epoch",
    ),
    "exponential": ({"gamma": 0.7}, lambda o: lrs.ExponentialLR(o, gamma=0.7), "epoch"),
    "cosine": (
        {"T_max": EPOCHS, "eta_min": 0.001},
        lambda o: lrs.CosineAnnealingLR(o, T_max=EPOCHS, eta_min=0.001),
        "epoch",
    ),
    "plateau": (
        {"mode": "max", "patience": 0, "factor": 0.5},
        lambda o: lrs.ReduceLROnPlateau(o, mode="max", patience=0, factor=0.5),
        "plateau",
    ),
    "cyclic": (
        {"base_lr": 0.005, "max_lr": LR, "step_size_up": 2},
        lambda o: lrs.CyclicLR(o, base_lr=0.005, max_lr=LR, step_size_up=2),
        "batch",
    ),
    "onecycle": (
        {"max_lr": LR, "total_steps": EPOCHS * SPE},
        lambda o: lrs.OneCycleLR(o, max_lr=LR, total_steps=EPOCHS * SPE),
        "batch",
    ),
    "linear": (
        {"start_factor": 0.25},
        lambda o: lrs.LinearLR(o, start_factor=0.25, total_iters=EPOCHS),
        "epoch",
    ),
    "polynomial": ({"power": 2.0}, lambda o: lrs.PolynomialLR(o, total_iters=EPOCHS, power=2.0), "epoch"),
    "constant_lr": (
        {"factor": 0.5, "total_iters": 2},
        lambda o: lrs.ConstantLR(o, factor=0.5, total_iters=2),
        "epoch",
    ),
    "sequential": (
        {
            "milestones": [1],
            "schedulers": [{"name": "linear", "start_factor": 0.5, "total_iters": 1}, {"name": "cosine"}],
        },
        lambda o: lrs.SequentialLR(
            o,
            [lrs.LinearLR(o, start_factor=0.5, total_iters=1), lrs.CosineAnnealingLR(o, T_max=EPOCHS - 1)],
            [1],
        ),
        "epoch",
    ),
    "chained": (
        {"schedulers": [{"name": "exponential", "gamma": 0.9}, {"name": "step", "step_size": 2}]},
        lambda o: lrs.ChainedScheduler([lrs.ExponentialLR(o, gamma=0.9), lrs.StepLR(o, step_size=2)], o),
        "epoch",
    ),
    "cosine_warm_restarts": (
        {"T_0": 1, "T_mult": 3, "eta_min": 0.0},  # cycles of 1 + 3 epochs: ends with the run
        lambda o: lrs.CosineAnnealingWarmRestarts(o, T_0=1, T_mult=3, eta_min=0.0),
        "batch_fractional",
    ),
}


def reference(factory, policy: str, groups: int, lrs0: list[float]) -> list[list[float]]:
    """A hand-written loop: torch optimizer + the torch class, stepped per its policy."""
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(groups)]
    opt = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, lrs0)], lr=LR, momentum=0.9)
    sched = factory(opt)
    out = []
    for epoch in range(EPOCHS):
        for i in range(SPE):
            out.append([g["lr"] for g in opt.param_groups])
            opt.step()
            if policy == "batch":
                sched.step()
            elif policy == "batch_fractional":
                sched.step(epoch + (i + 1) / SPE)
        if policy == "epoch":
            sched.step()
        elif policy == "plateau":
            sched.step(0.0)  # bench plan feeds a flat metric
    return out


def planned(tmp_path, **dotted):
    recipe = tiny_recipe(tmp_path / "data", data__subset=SUBSET, train__epochs=EPOCHS, **dotted)
    loaded = load_recipe(write_recipe(tmp_path / "r.yaml", recipe))
    (plan,) = plan_recipe(loaded)
    return plan


def as_matrix(plan) -> tuple[list[str], list[list[float]]]:
    wide = plan.lrs.pivot(index="step", columns="param_group", values="lr")
    names = list(dict.fromkeys(plan.lrs["param_group"]))
    return names, wide[names].to_numpy()


def test_cases_cover_every_scheduler_but_constant():
    assert set(CASES) == set(SCHEDULERS.names()) - {"constant"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_plan_matches_torch(tmp_path, name):
    kwargs, factory, policy = CASES[name]
    assert SCHEDULERS.get(name).policy == policy
    val = {"data__val_size": 10} if name == "plateau" else {}  # plateau decides on validation only
    plan = planned(tmp_path, train__scheduler={"name": name, **kwargs}, **val)
    assert plan.steps_per_epoch == SPE
    names, got = as_matrix(plan)
    assert len(got) == EPOCHS * SPE
    expected = np.asarray(reference(factory, policy, len(names), [LR] * len(names)))
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    assert plan.warnings == []


def test_warmup_ramps_per_step_and_per_layer_ratios_match_torch(tmp_path):
    """Linear warm-up per optimizer step on top of the cosine, per-layer LRs kept as ratios."""
    plan = planned(
        tmp_path,
        train__scheduler={"name": "cosine", "warmup_epochs": 1.5, "warmup_start_factor": 0.1},
        train__optimizer={"name": "sgd", "lr": LR, "momentum": 0.9, "layer_decay": 0.5, "head_lr_mult": 2.0},
    )
    names, got = as_matrix(plan)
    assert len(names) > 2 and "head" in names and "stem" in names
    head = got[:, names.index("head")]
    assert head[0] == pytest.approx(LR * 2.0 * 0.1)  # the first step at the warm-up start factor
    assert np.all(np.diff(head[: int(1.5 * SPE)]) > 0)  # a ramp over 1.5 epochs of steps, not a jump
    assert got[0][names.index("stem")] < head[0] / 4  # layer_decay ** depth
    warm = int(1.5 * SPE)
    ramp = np.array([0.1 + 0.9 * s / warm if s < warm else 1.0 for s in range(EPOCHS * SPE)])
    cosine = np.asarray(reference(lambda o: lrs.CosineAnnealingLR(o, T_max=EPOCHS), "epoch", len(names),
                                  list(got[-1] * 0 + [g for g in got[warm]] if False else plan_start(plan, names))))  # fmt: skip
    np.testing.assert_allclose(got, cosine * ramp[:, None], rtol=1e-9)


def test_lr_floor_is_planned_per_group_as_torch_gives_it_per_group(tmp_path):
    """``eta_min`` is for the base LR: each group's planned LR is torch's cosine down to ``eta_min``
    times the group's lr_scale, never the one absolute floor that would lift the stem."""
    plan = planned(
        tmp_path,
        train__scheduler={"name": "cosine", "eta_min": 0.01},
        train__optimizer={"name": "sgd", "lr": LR, "momentum": 0.9, "layer_decay": 0.5, "head_lr_mult": 2.0},
    )
    names, got = as_matrix(plan)
    assert got[0].min() < 0.01  # a group starts below the recipe's floor
    for k, lr0 in enumerate(got[0]):
        floor = 0.01 * lr0 / LR
        cosine = functools.partial(lrs.CosineAnnealingLR, T_max=EPOCHS, eta_min=floor)
        expected = reference(cosine, "epoch", 1, [lr0])
        np.testing.assert_allclose(got[:, k], np.asarray(expected)[:, 0], rtol=1e-12, err_msg=names[k])


def plan_start(plan, names):
    first = plan.lrs[plan.lrs["step"] == 0].set_index("param_group")["lr"]
    return [first[n] / 0.1 for n in names]


def test_steps_per_epoch_from_image_folder(tiny_image_folder):
    from bench.recipe.schema import DataConfig

    cfg = DataConfig(name="imagefolder", root=str(tiny_image_folder), batch_size=32)
    assert steps_per_epoch(cfg) == 160 // 32
    assert steps_per_epoch(cfg.model_copy(update={"classes": ["red", "blue"]})) == 80 // 32
    assert steps_per_epoch(cfg.model_copy(update={"val_size": 40})) == 120 // 32
    assert steps_per_epoch(cfg, override=7) == 7


def _warnings(tmp_path, cuda=False, **dotted) -> list[str]:
    recipe = tiny_recipe(tmp_path / "data", data__subset=SUBSET, train__epochs=EPOCHS, **dotted)
    loaded = load_recipe(write_recipe(tmp_path / "r.yaml", recipe))
    return plan_variant(loaded.variants[0], SPE, num_classes=4, cuda=cuda).warnings


@pytest.mark.parametrize(
    ("dotted", "needle"),
    [
        ({"train__precision": "amp_fp16"}, "amp_fp16 needs a CUDA device"),
        ({"train__scheduler": {"name": "cosine", "warmup_epochs": 5}}, "warm-up"),
        ({"train__freeze": 9}, "deeper than the model"),
        ({"train__scheduler": {"name": "cosine_warm_restarts", "T_0": 3}}, "ends mid-cycle"),
        ({"train__scheduler": {"name": "cosine_warm_restarts", "T_0": 1}}, "restarts every epoch"),
        ({"train__optimizer": {"name": "sgd", "lr": LR, "layer_decay": 0.05}}, "effectively frozen"),
        ({"train__scheduler": {"name": "exponential", "gamma": 1e-5}}, "collapses to ~0"),
        ({"train__swa": {"start_epoch": 2, "lr": 0.1}}, "swa.lr 0.1 is 2x this variant's peak LR"),
        ({"train__scheduler": {"name": "onecycle", "total_steps": 5}}, "fails at step"),
        ({"train__scheduler": {"name": "onecycle", "total_steps": 100}}, "cut off"),
        (
            {
                "train__scheduler": {
                    "name": "torch.optim.lr_scheduler:OneCycleLR",
                    "max_lr": LR,
                    "total_steps": 50,
                }
            },
            "stepped once per epoch",
        ),
    ],
)
def test_known_bad_combinations_are_flagged(tmp_path, dotted, needle):
    found = _warnings(tmp_path, **dotted)
    assert any(needle in w for w in found), found


def test_clean_recipe_has_no_warnings_and_amp_fp16_is_fine_with_cuda(tmp_path):
    assert _warnings(tmp_path) == []
    assert _warnings(tmp_path, cuda=True, train__precision="amp_fp16") == []


def test_swa_hands_over_to_swalr(tmp_path):
    plan = planned(tmp_path, train__swa={"start_epoch": 2, "lr": 0.01, "anneal_epochs": 1})
    by_epoch = plan.lrs.groupby("epoch")["lr"].max()
    assert by_epoch[3] == pytest.approx(0.01)  # SWALR reached its target after one anneal epoch
    assert by_epoch[0] == pytest.approx(LR)


def test_swa_lr_factor_is_planned_relative_to_the_base_lr_of_every_group(tmp_path):
    optimizer = {"name": "adamw", "lr": 1e-3, "head_lr_mult": 10.0, "layer_decay": 0.5}
    plan = planned(tmp_path, train__optimizer=optimizer, train__swa={"start_epoch": 2, "lr_factor": 0.2})
    names, got = as_matrix(plan)
    assert len(names) > 2
    np.testing.assert_allclose(got[-1], 0.2 * got[0], rtol=1e-12)  # each group at 0.2x its own start
    assert plan.warnings == []


def test_cli_writes_png_csv_and_warnings(tmp_path, capsys):
    recipe = tiny_recipe(
        tmp_path / "data", name="plancli", data__subset=SUBSET, train__epochs=2,
        matrix={"train.scheduler": [{"name": "onecycle"}, {"name": "step", "step_size": 1}], "train.precision": ["fp32", "amp_fp16"]},
    )  # fmt: skip
    path = write_recipe(tmp_path / "r.yaml", recipe)
    assert cli(["plan", str(path), "--results-dir", str(tmp_path / "res")]) == 0
    out = tmp_path / "res" / "plancli"
    assert (out / "plan.png").stat().st_size > 10_000
    table = pd.read_csv(out / "plan.csv")
    assert set(table["variant"]) == {
        f"scheduler={s},precision={p}" for s in ("onecycle", "step") for p in ("fp32", "amp_fp16")
    }
    assert table.groupby("variant")["step"].max().eq(2 * SPE - 1).all()
    warns = pd.read_csv(out / "plan_warnings.csv")
    if not torch.cuda.is_available():
        assert set(warns["variant"]) == {
            "scheduler=onecycle,precision=amp_fp16",
            "scheduler=step,precision=amp_fp16",
        }
    assert "warning:" in capsys.readouterr().out or torch.cuda.is_available()
    assert cli(["plan", str(path), "--results-dir", str(tmp_path / "res"), "--strict"]) == (
        0 if torch.cuda.is_available() else 1
    )
    assert not math.isnan(table["lr"].sum())
