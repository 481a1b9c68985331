"""The report compares like with like: effects only within matched cells of the design, and the
many comparisons of one report under family-wise error control (checked by simulation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.recipe.load import load_recipe
from bench.report import stats
from bench.report.tables import build_tables

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def _made_up_runs(recipe: str, outcome, seeds=(0, 1, 2)) -> tuple[pd.DataFrame, list[str], str]:
    """Every (variant, seed) of a shipped recipe with an accuracy from ``outcome(axis_values, seed)``."""
    loaded = load_recipe(RECIPES / recipe)
    groups = {v.group: v for v in loaded.variants}  # one per variant; the seeds are ours
    rows = [
        {"run_id": f"{g}|{seed}", "variant": f"{g},seed={seed}", "group": g, "seed": seed, "status": "finished",
         "reason": "", **{f"axis.{k}": val for k, val in v.axis_values.items()},
         "test/acc": outcome(v.axis_values, seed), "throughput/train_img_s": 1000.0,
         "memory/peak_rss_mb": 100.0, "time/wall_s": 10.0}
        for g, v in groups.items()
        for seed in seeds
    ]  # fmt: skip
    runs = pd.DataFrame(rows)
    axes = list(loaded.variants[0].axis_values)
    return runs, axes, loaded.recipe.baseline


@pytest.mark.parametrize("recipe", ["cifar10_resnet.yaml", "smoke.yaml"])
def test_only_the_axis_that_matters_shows_an_effect(recipe):
    """Only the scheduler changes accuracy (plus a per-seed offset shared by all variants): every
    other axis, `exclude`d (SWA only with cosine) or `include`d (adamw, bf16, EMA), reads Δ 0."""

    def outcome(axes, seed):
        return 0.80 + (0.05 if axes["scheduler"] == "cosine" else 0.0) + 0.01 * seed

    runs, axes, baseline = _made_up_runs(recipe, outcome)
    t = build_tables(runs, axes, baseline=baseline)
    table = t.axes.set_index(["axis", "value"])
    assert "swa" in set(t.axes["axis"]) and "scheduler" in set(t.axes["axis"])
    for (axis, value), row in table.iterrows():
        expected = 0.0 if axis != "scheduler" else (0.05 if value == "cosine" else -0.05)
        assert row["acc_delta"] == pytest.approx(expected, abs=1e-12), (axis, value, row["design"])


def test_design_says_where_a_comparison_holds():
    runs, axes, baseline = _made_up_runs("cifar10_resnet.yaml", lambda a, s: 0.8 + 0.01 * s)
    table = build_tables(runs, axes, baseline=baseline).axes.set_index(["axis", "value"])
    # the recipe excludes SWA with OneCycle, the baseline's scheduler: SWA is compared where cosine runs
    assert "only where scheduler=cosine" in table.loc[("swa", "on"), "design"]
    # cosine vs onecycle: the SWA cells have no OneCycle counterpart and are left out, said so
    assert "without a counterpart left out" in table.loc[("scheduler", "cosine"), "design"]
    smoke_runs, smoke_axes, smoke_base = _made_up_runs("smoke.yaml", lambda a, s: 0.8 + 0.01 * s)
    smoke = build_tables(smoke_runs, smoke_axes, baseline=smoke_base).axes.set_index(["axis", "value"])
    # an `include` entry is its paired comparison with the one variant it differs from
    assert smoke.loc[("optimizer", "adamw"), "design"] == f"one cell: vs `{smoke_base}` only"
    assert smoke.loc[("freeze", "3"), "design"].startswith("balanced: 2 cells over scheduler")


def _null_study(rng, variants: int, seeds: int, sd: float = 0.01, seed_sd: float = 0.01) -> pd.DataFrame:
    """No variant differs from the baseline; runs share a per-seed offset (pairing has something
    to remove) and have independent noise of their own."""
    offset = rng.normal(0, seed_sd, seeds)
    rows = []
    for v in range(variants + 1):
        for s in range(seeds):
            rows.append({"run_id": f"{v}|{s}", "variant": f"x=v{v},seed={s}", "group": f"x=v{v}", "seed": s,
                         "status": "finished", "reason": "", "axis.x": f"v{v}",
                         "test/acc": 0.8 + offset[s] + rng.normal(0, sd), "throughput/train_img_s": 1000.0,
                         "memory/peak_rss_mb": 100.0, "time/wall_s": 10.0})  # fmt: skip
    return pd.DataFrame(rows)


@pytest.mark.slow
@pytest.mark.parametrize("seeds", [3, 10])
def test_family_wise_error_stays_at_alpha_with_35_comparisons(seeds):
    """Simulated studies with no effect anywhere: the share that shows any "better"/"worse"
    (or "leaning") verdict stays at most α = 0.05 (binomial margin for 200 studies). Before Holm,
    67% of 3-seed studies showed a "leaning" verdict and 53% of 10-seed ones a false "better/worse"."""
    rng = np.random.default_rng(seeds)
    studies, false_any = 200, 0
    for _ in range(studies):
        t = build_tables(_null_study(rng, 35, seeds), ["x"], baseline="x=v0")
        verdicts = set(t.baseline["verdict"])
        false_any += bool(verdicts & {"better", "worse", "leaning better", "leaning worse"})
    assert false_any / studies <= 0.05 + 2.5 * np.sqrt(0.05 * 0.95 / studies)
    assert int(t.baseline["family"].max()) == 35


def test_holm_adjustment():
    assert stats.holm([0.01, 0.04, 0.03, float("nan")])[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert np.isnan(stats.holm([0.01, float("nan")])[1])
    # a real effect still comes through the correction with enough seeds
    rng = np.random.default_rng(0)
    runs = _null_study(rng, 10, 10, sd=0.002)
    runs.loc[runs["group"] == "x=v1", "test/acc"] += 0.02
    b = build_tables(runs, ["x"], baseline="x=v0").baseline.set_index("variant")
    assert b.loc["x=v1", "verdict"] == "better" and b.loc["x=v1", "p_holm"] <= 0.05
    assert b.loc["x=v1", "p_holm"] >= b.loc["x=v1", "p_t"] and b.loc["x=v1", "p_sign_flip"] <= 0.05


def test_no_harm_is_an_equivalence_verdict():
    """A speed trick that leaves accuracy alone is called "equivalent" within ±min_effect, with a
    Holm-adjusted TOST p; one that moves accuracy by twice the margin is not."""
    rng = np.random.default_rng(1)
    runs = _null_study(rng, 2, 8, sd=0.0005)
    runs.loc[runs["group"] == "x=v2", "test/acc"] += 0.01
    b = build_tables(runs, ["x"], baseline="x=v0", min_effect=0.005).baseline.set_index("variant")
    assert b.loc["x=v1", "verdict"] == "equivalent" and b.loc["x=v1", "p_equivalent_holm"] <= 0.05
    assert b.loc["x=v2", "verdict"] == "better" and b.loc["x=v2", "p_equivalent"] > 0.5


@pytest.mark.slow
def test_equivalence_is_not_claimed_at_the_margin():
    """True difference exactly at the margin: "equivalent" in at most α of studies (10 comparisons)."""
    rng = np.random.default_rng(2)
    studies, claimed = 200, 0
    for _ in range(studies):
        runs = _null_study(rng, 10, 6)
        runs.loc[runs["group"] != "x=v0", "test/acc"] += 0.005
        t = build_tables(runs, ["x"], baseline="x=v0", min_effect=0.005)
        claimed += bool((t.baseline["verdict"] == "equivalent").any())
    assert claimed / studies <= 0.05 + 2.5 * np.sqrt(0.05 * 0.95 / studies)


def test_pairing_is_measured_not_assumed():
    rng = np.random.default_rng(3)
    shared = _null_study(rng, 1, 10, sd=0.001, seed_sd=0.02)  # seeds move both arms together
    b = build_tables(shared, ["x"], baseline="x=v0").baseline.set_index("variant")
    assert b.loc["x=v1", "pair_corr"] > 0.9 and b.loc["x=v1", "pairing_efficiency"] > 10
    assert b.loc["x=v1", "interval_used"] == "paired"
    apart = _null_study(rng, 1, 10, sd=0.02, seed_sd=0.0)  # runs decorrelate: pairing removes nothing
    b = build_tables(apart, ["x"], baseline="x=v0").baseline.set_index("variant")
    assert abs(b.loc["x=v1", "pair_corr"]) < 0.9 and b.loc["x=v1", "pairing_efficiency"] < 3
