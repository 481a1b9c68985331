"""Statistics of ``bench report`` on hand-made data: t intervals, the paired bootstrap, Pareto
fronts, marginal effects, time to target, and failed/skipped runs kept with their reasons."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from bench.report import stats
from bench.report.markdown import render
from bench.report.tables import build_tables


def test_mean_ci_is_the_t_interval():
    x = [0.80, 0.82, 0.85, 0.79]
    s = stats.mean_ci(x)
    half = st.t.ppf(0.975, 3) * np.std(x, ddof=1) / math.sqrt(4)
    assert (s.n, s.mean, s.std) == (4, pytest.approx(np.mean(x)), pytest.approx(np.std(x, ddof=1)))
    assert (s.lo, s.hi) == (pytest.approx(np.mean(x) - half), pytest.approx(np.mean(x) + half))
    assert stats.t_quantile(0.975, 1) == pytest.approx(12.706, abs=1e-3)


def test_mean_ci_small_samples():
    one = stats.mean_ci([0.5, float("nan")])
    assert one.n == 1 and one.mean == 0.5 and math.isnan(one.std) and math.isnan(one.lo)
    assert stats.mean_ci([]).n == 0


def test_paired_bootstrap_pairs_by_seed_and_is_reproducible():
    base = {0: 0.70, 1: 0.72, 2: 0.75, 3: 0.71}
    var = {0: 0.73, 1: 0.74, 2: 0.79, 9: 0.99}  # seed 3 missing, seed 9 unpaired
    a = stats.paired_bootstrap(var, base)
    assert a == stats.paired_bootstrap(var, base)  # fixed RNG seed
    assert a.n == 3 and a.seeds == (0, 1, 2)
    d = np.array([0.03, 0.02, 0.04])
    assert a.diff == pytest.approx(d.mean())
    rng = np.random.default_rng(stats.BOOTSTRAP_SEED)  # the same recipe, written out
    means = d[rng.integers(0, 3, size=(stats.BOOTSTRAP_SAMPLES, 3))].mean(axis=1)
    assert (a.lo, a.hi) == (
        pytest.approx(np.quantile(means, 0.025)),
        pytest.approx(np.quantile(means, 0.975)),
    )
    assert d.min() - 1e-12 <= a.lo <= a.diff <= a.hi <= d.max() + 1e-12


def test_paired_bootstrap_constant_difference_and_degenerate_cases():
    c = stats.paired_bootstrap({0: 0.6, 1: 0.7}, {0: 0.5, 1: 0.6})
    assert (c.diff, c.lo, c.hi) == (pytest.approx(0.1), pytest.approx(0.1), pytest.approx(0.1))
    one = stats.paired_bootstrap({0: 0.6}, {0: 0.5, 1: 0.6})
    assert one.n == 1 and one.diff == pytest.approx(0.1) and math.isnan(one.lo)
    assert stats.paired_bootstrap({5: 0.6}, {0: 0.5}).n == 0


def test_pareto_front():
    p = pd.DataFrame(
        {"acc": [0.9, 0.8, 0.85, 0.7, 0.9, float("nan")], "speed": [100, 300, 200, 250, 90, 999]}
    )
    assert stats.pareto_front(p, "speed", "acc").tolist() == [True, True, True, False, False, False]
    mem = pd.DataFrame({"acc": [0.9, 0.8, 0.85], "mb": [500, 100, 600]})
    assert stats.pareto_front(mem, "mb", "acc", maximize_x=False).tolist() == [True, True, False]


def test_marginal_effects_average_over_other_axes():
    v = pd.DataFrame(
        {
            "scheduler": ["cos", "cos", "one", "one"],
            "freeze": ["0", "3", "0", "3"],
            "acc": [0.80, 0.70, 0.90, 0.76],
        }
    )
    sched = stats.marginal_effects(v, "scheduler", "acc").set_index("value")
    assert sched.loc["cos", "mean"] == pytest.approx(0.75)
    assert sched.loc["one", "delta"] == pytest.approx(0.83 - 0.75)
    freeze = stats.marginal_effects(v, "freeze", "acc", reference="3").set_index("value")
    assert freeze.loc["0", "delta"] == pytest.approx(0.85 - 0.73) and freeze.loc["3", "delta"] == 0


def test_time_to_target():
    assert stats.time_to_target([0.3, 0.55, 0.6, 0.7], 40.0, 0.5) == pytest.approx(20.0)
    assert math.isnan(stats.time_to_target([0.3, 0.4], 10.0, 0.5))


def _runs() -> pd.DataFrame:
    rows = []
    acc = {("cos", 0): 0.80, ("cos", 1): 0.82, ("one", 0): 0.85, ("one", 1): 0.86}
    for (sched, seed), a in acc.items():
        rows.append({"run_id": f"{sched}{seed}", "variant": f"scheduler={sched},seed={seed}", "group": f"scheduler={sched}",
                     "seed": seed, "status": "finished", "reason": "", "axis.scheduler": sched, "axis.precision": "fp32",
                     "test/acc": a, "throughput/train_img_s": 1000.0 if sched == "cos" else 1500.0,
                     "memory/peak_rss_mb": 500.0, "time/wall_s": 10.0, "time_to_target_s": math.nan})  # fmt: skip
    for seed in (0, 1):
        rows.append({"run_id": f"fp16{seed}", "variant": f"precision=amp_fp16,seed={seed}", "group": "precision=amp_fp16",
                     "seed": seed, "status": "skipped", "reason": "amp_fp16 needs a CUDA device", "axis.scheduler": "cos",
                     "axis.precision": "amp_fp16"})  # fmt: skip
    rows.append({"run_id": "div", "variant": "scheduler=one,seed=2", "group": "scheduler=one", "seed": 2, "status": "failed",
                 "reason": "diverged at epoch 1: loss nan", "axis.scheduler": "one", "axis.precision": "fp32"})  # fmt: skip
    return pd.DataFrame(rows)


def test_tables_keep_skipped_and_failed_runs_with_reasons():
    t = build_tables(_runs(), ["scheduler", "precision"], baseline="scheduler=cos")
    v = t.variants.set_index("variant")
    assert v.loc["precision=amp_fp16", "seeds"] == 0 and v.loc["precision=amp_fp16", "status"] == "2 skipped"
    assert v.loc["scheduler=one", "seeds"] == 2 and "1 failed" in v.loc["scheduler=one", "status"]
    assert v.loc["scheduler=one", "acc_mean"] == pytest.approx(0.855)  # the failed seed is not averaged in
    assert set(t.excluded["status"]) == {"skipped", "failed"} and len(t.excluded) == 3
    b = t.baseline.set_index("variant")
    assert b.loc["scheduler=one", "acc_diff"] == pytest.approx(0.045)
    assert b.loc["scheduler=one", "train_img_s_ratio"] == pytest.approx(1.5)
    assert "precision=amp_fp16" not in b.index
    text = render(t, recipe="r", experiment="r", tracking_uri="sqlite://", plots={}, summary_lines=[])
    assert "amp_fp16 needs a CUDA device" in text and "diverged at epoch 1: loss nan" in text
    assert "| `precision=amp_fp16` | 0 |" in text


def test_baseline_falls_back_to_the_first_scored_variant():
    t = build_tables(_runs(), ["scheduler", "precision"], baseline="precision=amp_fp16")
    assert t.baseline_name == "scheduler=cos"
    assert t.axes.set_index(["axis", "value"]).loc[("scheduler", "one"), "acc_delta"] == pytest.approx(0.045)
