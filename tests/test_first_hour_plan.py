"""Trap 11 of "The first hour of a new user": ``bench plan`` said nothing when a param group's LR
jumped above its own earlier peak (an absolute swa.lr over AdamW's layer-decayed groups, a
schedule that climbs), and its plot of 36 variants cut every title to "...precisi…"."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.plan.schedule import VariantPlan, plan_variant, plot_plan
from bench.recipe.load import load_recipe
from tests.recipes import tiny_recipe, write_recipe

EPOCHS, SUBSET, SPE = 4, 100, 3
ADAMW = {"name": "adamw", "lr": 1e-3, "head_lr_mult": 10.0, "layer_decay": 0.5}


def warnings_of(tmp_path, **dotted) -> list[str]:
    recipe = tiny_recipe(tmp_path / "data", data__subset=SUBSET, train__epochs=EPOCHS, **dotted)
    loaded = load_recipe(write_recipe(tmp_path / "r.yaml", recipe))
    return plan_variant(loaded.variants[0], SPE, num_classes=4, cuda=False).warnings


def rises(found: list[str]) -> list[str]:
    return [w for w in found if "earlier peak" in w or "peak LR" in w]


def test_adamw_groups_pushed_above_their_peak_by_swa_are_flagged(tmp_path):
    """SWA from epoch 1 at 0.9x the base LR, while a 2-epoch warm-up has reached a third of it:
    every AdamW group (head and layer-decayed stages) goes above its own earlier peak, yet swa.lr
    is under the optimizer's LR, so the absolute-swa.lr check alone is content."""
    found = warnings_of(
        tmp_path, train__optimizer=ADAMW, train__scheduler={"name": "cosine", "warmup_epochs": 2},
        train__swa={"start_epoch": 1, "lr": 9e-4, "anneal_epochs": 1},
    )  # fmt: skip
    [rise] = [w for w in found if "rises above the group's earlier peak" in w]
    assert "'stem'" in rise and "'head'" in rise, rise


def test_a_schedule_that_climbs_after_warm_up_is_flagged_without_swa(tmp_path):
    found = warnings_of(tmp_path, train__scheduler={"name": "step", "step_size": 2, "gamma": 2.0})
    assert any("rises above the group's earlier peak" in w and "at epoch 2" in w for w in found), found


@pytest.mark.parametrize(
    "dotted",
    [
        {},  # cosine
        {"train__scheduler": {"name": "cosine", "warmup_epochs": 1}},
        {"train__scheduler": {"name": "onecycle"}},
        {"train__scheduler": {"name": "cosine_warm_restarts", "T_0": 2}},
        {"train__scheduler": {"name": "cyclic", "base_lr": 0.005, "max_lr": 0.05, "step_size_up": 2}},
        {"train__scheduler": {"name": "constant"}},
        {"train__optimizer": ADAMW, "train__swa": {"start_epoch": 2, "lr_factor": 0.2}},
        {"train__swa": {"start_epoch": 2, "lr": 0.01}},
    ],
)
def test_warm_ups_restarts_to_the_peak_and_relative_swa_are_not_flagged(tmp_path, dotted):
    assert rises(warnings_of(tmp_path, **dotted)) == []


def test_an_absolute_swa_lr_above_the_base_peak_is_said_once_with_its_fix(tmp_path):
    found = warnings_of(tmp_path, train__swa={"start_epoch": 2, "lr": 0.1})
    assert len(rises(found)) == 1 and "swa.lr_factor" in rises(found)[0], found


def fake_plan(group: str, schedule: float, warnings: list[str] = ()) -> VariantPlan:
    steps = np.arange(20)
    lrs = pd.DataFrame({"step": steps, "epoch": steps // 2, "batch": steps % 2, "param_group": "all",
                        "lr": schedule * np.cos(steps / 20), "momentum": 0.9})  # fmt: skip
    return VariantPlan(group, 10, 2, lrs, list(warnings))


def test_36_variants_plot_as_one_panel_per_schedule_with_full_titles(tmp_path):
    """cifar10_resnet.yaml: precision does not change the LR, so its 36 variants have 12 distinct
    schedules; every panel names what it shows in full (no "…"), the axis it merges included."""
    loaded = load_recipe("recipes/cifar10_resnet.yaml")
    groups = list(dict.fromkeys(v.group for v in loaded.variants))
    assert len(groups) == 36
    plans = []
    for g in groups:  # the LR depends on everything but precision, as the real plan's would
        key = (
            g.replace(",precision=fp32", "")
            .replace(",precision=amp_fp16", "")
            .replace(",precision=amp_bf16", "")
        )
        warn = ["precision amp_fp16 needs a CUDA device"] if "amp_fp16" in g else []
        plans.append(fake_plan(g, 0.01 + 0.001 * sorted(set(
            x.replace(",precision=fp32", "").replace(",precision=amp_fp16", "").replace(",precision=amp_bf16", "")
            for x in groups)).index(key), warn))  # fmt: skip
    titles = plot_plan(plans, tmp_path / "plan.png")  # the panels' titles
    assert titles is not None and len(titles) == 12 and (tmp_path / "plan.png").stat().st_size > 10_000
    for title in titles:
        assert "…" not in title and "..." not in title, title
        assert "precision=fp32 | amp_fp16 | amp_bf16" in title.replace("\n", " "), title
        assert "warning" in title  # its amp_fp16 member has one
    for g in groups:  # every variant is named: each key=value of it is in its panel's title
        key = (
            g.replace(",precision=fp32", "")
            .replace(",precision=amp_fp16", "")
            .replace(",precision=amp_bf16", "")
        )
        assert any(all(part in t.replace("\n", " ") for part in key.split(",")) for t in titles), g
