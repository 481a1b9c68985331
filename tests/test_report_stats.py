"""Statistics of ``bench report`` on hand-made data: t intervals, the paired t-interval with its
exact sign-flip test and power, throughput medians with their spread, Pareto fronts, marginal effects, time to target, and failed/skipped runs kept with their reasons."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from bench.report import stats
from bench.report.build import summary_lines
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


def test_paired_test_is_the_paired_t_interval_with_an_exact_sign_flip_p():
    base = {0: 0.70, 1: 0.72, 2: 0.75, 3: 0.71}
    var = {0: 0.73, 1: 0.74, 2: 0.79, 3: 0.70, 9: 0.99}  # seed 9 unpaired
    a = stats.paired_test(var, base)
    d = np.array([0.03, 0.02, 0.04, -0.01])
    assert a.n == 4 and a.seeds == (0, 1, 2, 3) and a.diff == pytest.approx(d.mean())
    lo, hi = st.t.interval(0.95, 3, loc=d.mean(), scale=st.sem(d))
    assert (a.lo, a.hi, a.sd) == (pytest.approx(lo), pytest.approx(hi), pytest.approx(d.std(ddof=1)))
    flips = [abs((np.array(s) * d).mean()) for s in itertools.product([-1, 1], repeat=4)]
    assert a.p_value == pytest.approx(np.mean(np.array(flips) >= abs(d.mean()) - 1e-12))
    assert a.verdict == "within noise"  # the interval includes 0


def test_two_seeds_never_settle_a_difference():
    """The old bootstrap called this "worse on every resample" from 2 seeds (3 distinct resamples)."""
    d = stats.paired_test({0: 0.70, 1: 0.71}, {0: 0.80, 1: 0.82})
    assert d.n == 2 and d.verdict == "too few seeds" and d.p_value == pytest.approx(0.5)
    rows = [_row(g, seed, acc) for g, accs in (("base", (0.80, 0.82)), ("var", (0.70, 0.71)))
            for seed, acc in enumerate(accs)]  # fmt: skip
    t = build_tables(pd.DataFrame(rows), ["x"], baseline="base")
    lines = " ".join(summary_lines(t))
    assert "Worse than" not in lines and "every resample" not in lines
    assert "fewer than 3 seeds" in lines
    assert t.baseline.set_index("variant").loc["var", "verdict"] == "too few seeds"


def test_three_seeds_lean_six_seeds_settle():
    """With 3 pairs the exact sign-flip test cannot go below p = 2/8; with 6 it reaches 2/64."""
    base = {s: 0.80 + 0.01 * (s % 2) for s in range(6)}
    var = {s: base[s] + 0.02 + 0.001 * s for s in range(6)}
    three = stats.paired_test({s: var[s] for s in range(3)}, base)
    assert three.lo > 0 and three.p_value == pytest.approx(0.25) and three.verdict == "leaning better"
    six = stats.paired_test(var, base)
    assert six.p_value == pytest.approx(2 / 64) and six.verdict == "better"
    worse = stats.paired_test(base, var)
    assert worse.verdict == "worse" and worse.hi < 0


def test_minimal_detectable_difference_and_seeds_needed():
    sd, n = 0.01, 4
    expected = (st.t.ppf(0.975, 3) + st.t.ppf(0.8, 3)) * sd / math.sqrt(n)
    assert stats.min_detectable(sd, n) == pytest.approx(expected)
    assert math.isnan(stats.min_detectable(sd, 1))
    k = stats.seeds_needed(sd, 0.005)
    assert stats.min_detectable(sd, int(k)) <= 0.005 < stats.min_detectable(sd, int(k) - 1)
    assert stats.seeds_needed(0.0, 0.005) == stats.MIN_PAIRS
    assert math.isinf(stats.seeds_needed(1.0, 1e-4)) and math.isnan(stats.seeds_needed(math.nan, 0.005))
    d = stats.paired_test({0: 0.71, 1: 0.74, 2: 0.70}, {0: 0.70, 1: 0.70, 2: 0.70}, min_effect=0.01)
    assert d.mdd == pytest.approx(stats.min_detectable(d.sd, 3))
    assert d.seeds_needed == stats.seeds_needed(d.sd, 0.01)


def test_speed_is_a_paired_ratio_that_drift_and_contention_do_not_move():
    """Load drifts between seed blocks (500 to 2,000 img/s) and hits both arms alike; one run of
    `same` ran beside a busy process and is marked contaminated. Paired by seed with that run left
    out, `same` reads 1.00× and `fast` 2.00× (called faster); medians of unpaired runs read 0.75×."""
    drift = (1000.0, 500.0, 2000.0, 1000.0)
    rows = [_row("base", s, 0.8, v) for s, v in enumerate(drift)]
    rows += [_row("same", s, 0.8, v) for s, v in enumerate((1000.0, 500.0, 2000.0, 300.0))]
    rows[-1]["contention/speed_contaminated"] = 1.0
    rows += [_row("fast", s, 0.8, 2 * v * (1 + 0.01 * s)) for s, v in enumerate(drift)]
    rows += [_row("sched", s, 0.8, v * (1 + 0.005 * (-1) ** s)) for s, v in enumerate(drift)]
    t = build_tables(pd.DataFrame(rows), ["x"], baseline="base", compute_neutral={"sched"})
    b = t.baseline.set_index("variant")
    assert b.loc["same", "train_img_s_ratio"] == pytest.approx(1.0) and b.loc["same", "speed_left_out"] == 1
    assert b.loc["same", "speed_pairs"] == 3
    assert b.loc["fast", "train_img_s_lo"] > 1.9 and b.loc["fast", "speed_verdict"] == "faster"
    assert t.speed_floor == pytest.approx(1.01) and "A/A" in t.speed_floor_source
    text = render(t, recipe="r", experiment="r", tracking_uri="sqlite://", plots={}, summary_lines=[])
    assert "1 seed pair(s) left out (timed under load)" in text and "noise floor ±1.0%" in text


def _row(group: str, seed: int, acc: float, speed: float = 1000.0) -> dict:
    return {"run_id": f"{group}{seed}", "variant": f"{group},seed={seed}", "group": group, "seed": seed,
            "status": "finished", "reason": "", "axis.x": group, "test/acc": acc,
            "throughput/train_img_s": speed, "memory/peak_rss_mb": 500.0, "time/wall_s": 10.0}  # fmt: skip


def test_pareto_front():
    p = pd.DataFrame(
        {"acc": [0.9, 0.8, 0.85, 0.7, 0.9, float("nan")], "speed": [100, 300, 200, 250, 90, 999]}
    )
    assert stats.pareto_front(p, "speed", "acc").tolist() == [True, True, True, False, False, False]
    mem = pd.DataFrame({"acc": [0.9, 0.8, 0.85], "mb": [500, 100, 600]})
    assert stats.pareto_front(mem, "mb", "acc", maximize_x=False).tolist() == [True, True, False]


def test_axis_effect_is_the_mean_within_cell_difference():
    # a full 2x2 factorial: the effect of freeze is the mean of its two within-scheduler differences
    runs = pd.DataFrame([
        {"run_id": f"{s}{f}{seed}", "variant": f"scheduler={s},freeze={f},seed={seed}",
         "group": f"scheduler={s},freeze={f}", "seed": seed, "status": "finished", "reason": "",
         "axis.scheduler": s, "axis.freeze": f, "test/acc": acc + 0.01 * seed, "throughput/train_img_s": 100.0,
         "memory/peak_rss_mb": 1.0, "time/wall_s": 1.0}
        for (s, f), acc in {("cos", "0"): 0.80, ("cos", "3"): 0.70, ("one", "0"): 0.90, ("one", "3"): 0.76}.items()
        for seed in (0, 1, 2)
    ])  # fmt: skip
    t = build_tables(runs, ["scheduler", "freeze"], baseline="scheduler=cos,freeze=0")
    axes = t.axes.set_index(["axis", "value"])
    assert axes.loc[("freeze", "3"), "acc_delta"] == pytest.approx(((0.70 - 0.80) + (0.76 - 0.90)) / 2)
    assert axes.loc[("scheduler", "one"), "acc_delta"] == pytest.approx(((0.90 - 0.80) + (0.76 - 0.70)) / 2)
    assert axes.loc[("freeze", "3"), "design"].startswith("balanced: 2 cells over scheduler")
    assert axes.loc[("freeze", "3"), "seeds"] == 3


def test_time_to_target_counts_training_seconds_per_epoch():
    # epochs of 5, 30 (a loaded machine or a slow evaluation does not count: only training) and 5 s
    assert stats.time_to_target([0.3, 0.55, 0.6], [5.0, 30.0, 5.0], 0.5) == pytest.approx(35.0)
    assert stats.time_to_target([0.6], [5.0], 0.5) == pytest.approx(5.0)
    assert math.isnan(stats.time_to_target([0.3, 0.4], [10.0, 10.0], 0.5))


def test_time_intervals_never_go_below_zero():
    # widely spread times (4 s and 19 s per epoch under load): the t-interval on seconds goes negative
    assert stats.mean_ci([4.0, 19.0], 0.95).lo < 0
    g = stats.geometric_ci([4.0, 19.0], 0.95)
    assert 0 < g.lo < g.mean < g.hi and g.mean == pytest.approx(math.sqrt(4.0 * 19.0))


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


def test_fastest_variant_says_when_its_speed_was_timed_on_a_busy_machine():
    """First hour on a shared 2-core machine: 15 of 16 smoke runs were marked contaminated, yet the
    summary named a "fastest" variant from their medians without a word."""
    rows = [_row("base", s, 0.8, 3700.0 if s == 0 else 700.0) for s in range(2)]
    rows += [_row("var", s, 0.8, 200.0) for s in range(2)]
    for row in rows[1:]:
        row["contention/speed_contaminated"] = 1.0
    rows[0]["contention/speed_contaminated"] = 0.0
    lines = summary_lines(build_tables(pd.DataFrame(rows), ["x"], baseline="base"))
    busy = next(line for line in lines if "busy machine" in line)
    assert "3 of 4 finished run(s)" in busy and "left out of the img/s medians" in busy
    assert "`var` had no clean run" in busy and "bench speed" in busy
    for row in rows:  # an idle machine: no caveat
        row["contention/speed_contaminated"] = 0.0
    assert not any(
        "busy machine" in line
        for line in summary_lines(build_tables(pd.DataFrame(rows), ["x"], baseline="base"))
    )


def test_a_variant_too_short_to_time_is_not_said_to_have_had_no_clean_run():
    """`tiny`'s runs were all clean but too short to time (no throughput recorded); one baseline run
    was marked contaminated. The busy-machine line said "`tiny` had no clean run", which sends the
    user to re-time a variant on a quiet machine when its runs are too short to time anywhere."""
    rows = [_row("base", s, 0.8, 1000.0) for s in range(3)] + [
        _row("tiny", s, 0.8, math.nan) for s in range(3)
    ]
    rows[2]["contention/speed_contaminated"] = 1.0
    busy = next(line for line in summary_lines(build_tables(pd.DataFrame(rows), ["x"], baseline="base"))
                if "busy machine" in line)  # fmt: skip
    assert "1 of 6 finished run(s)" in busy and "no clean run" not in busy


def test_a_fastest_variant_timed_clean_once_is_not_ranked_on_that_one_run():
    """Contention marked two of `sched`'s three runs; the clean one read 1,300 img/s against `amp`'s
    1,190-1,210 on three clean runs. Its [min, max] was that one value, so nothing overlapped and the
    summary named `sched` fastest without a caveat, on a single timing."""
    rows = [_row("amp", s, 0.8, v) for s, v in enumerate((1200.0, 1210.0, 1190.0))]
    rows += [_row("sched", s, 0.8, v) for s, v in enumerate((1300.0, 1000.0, 1000.0))]
    for row in rows[-2:]:
        row["contention/speed_contaminated"] = 1.0
    lines = summary_lines(build_tables(pd.DataFrame(rows), ["x"], baseline="amp"))
    fastest = next(line for line in lines if line.startswith("Fastest to train"))
    assert "`sched`" in fastest and "from one run of `sched` only, so not told apart from `amp`" in fastest


def test_runs_timed_under_load_stay_out_of_the_medians_the_fastest_and_the_pareto_front():
    """Two variants with the same per-step compute; the baseline's second seed ran while another job
    took the cores (monitor: contaminated). Its 200 img/s dragged the baseline's median to 600, so
    `var` was named fastest and alone on the speed front, a cost the trick does not have."""
    rows = [_row("base", 0, 0.8, 1000.0), _row("base", 1, 0.8, 200.0)]
    rows += [_row("var", s, 0.8, 900.0) for s in range(2)]
    for row in rows:
        row["contention/speed_contaminated"] = 1.0 if row is rows[1] else 0.0
    t = build_tables(pd.DataFrame(rows), ["x"], baseline="base")
    v = t.variants.set_index("variant")
    assert v.loc["base", "train_img_s_median"] == 1000.0 and v.loc["base", "speed_contaminated"] == 1
    assert t.pareto.set_index("variant")["front_throughput"].to_dict() == {"base": True, "var": False}
    assert any(line.startswith("Fastest to train: `base` at 1000 img/s") for line in summary_lines(t))


def test_wall_time_ratio_is_paired_with_an_interval_and_leaves_busy_runs_out():
    """The baseline table printed `wall ratio 1.61×` bare, a ratio of two geometric means: no
    interval, and runs timed under load in it. Now it is paired by seed like throughput."""
    rows = []
    for s, (b, v) in enumerate([(10.0, 20.0), (12.0, 25.0), (11.0, 21.0), (10.0, 90.0)]):
        rows += [_row("base", s, 0.8), _row("var", s, 0.8)]
        rows[-2]["time/wall_s"], rows[-1]["time/wall_s"] = b, v
        rows[-1]["contention/speed_contaminated"] = 1.0 if s == 3 else 0.0  # 90 s: timed under load
    t = build_tables(pd.DataFrame(rows), ["x"], baseline="base")
    var = t.baseline.set_index("variant").loc["var"]
    assert var["wall_ratio"] == pytest.approx((2.0 * 25 / 12 * 21 / 11) ** (1 / 3))
    assert var["wall_lo"] < var["wall_ratio"] < var["wall_hi"]
    text = render(t, recipe="r", experiment="r", tracking_uri="sqlite://", plots={}, summary_lines=[])
    assert f"{var['wall_ratio']:.2f}× [{var['wall_lo']:.2f}, {var['wall_hi']:.2f}]" in text


def test_first_to_target_is_named_from_runs_timed_on_a_quiet_machine():
    """Time to target is a speed: a run slowed by another job must not decide who got there first."""
    rows = [_row("base", 0, 0.8), _row("base", 1, 0.8), _row("var", 0, 0.8), _row("var", 1, 0.8)]
    for row, seconds, busy in zip(rows, (5.0, 30.0, 6.0, 6.0), (0, 1, 0, 0)):
        row["time_to_target_s"], row["contention/speed_contaminated"] = seconds, float(busy)
    t = build_tables(pd.DataFrame(rows), ["x"], baseline="base", target_acc=0.5)
    assert t.variants.set_index("variant").loc["base", "ttt_s_mean"] == pytest.approx(5.0)
    assert any(line.startswith("First to 0.5 test (no validation split) accuracy: `base` after 5.0 s")
               for line in summary_lines(t))  # fmt: skip
    for row in rows:
        row["contention/speed_contaminated"] = 1.0
    lines = summary_lines(build_tables(pd.DataFrame(rows), ["x"], baseline="base", target_acc=0.5))
    assert any("was timed on a quiet machine: no variant is named first" in line for line in lines), lines


def test_speed_left_out_counts_the_seed_pairs_the_ratio_lost():
    """A seed whose runs were both timed under load read "2 run(s) left out" for one lost pair, and
    a variant with 3 seeds could show 6 left out; the column now counts pairs the ratio is not over."""
    rows = []
    for s in range(4):
        rows += [_row("base", s, 0.8), _row("var", s, 0.8)]
        busy = 1.0 if s in (0, 1) else 0.0  # seeds 0 and 1: both arms timed under load
        rows[-2]["contention/speed_contaminated"] = rows[-1]["contention/speed_contaminated"] = busy
    b = build_tables(pd.DataFrame(rows), ["x"], baseline="base").baseline.set_index("variant")
    assert b.loc["var", "speed_left_out"] == 2 and b.loc["var", "speed_pairs"] == 2
    text = render(build_tables(pd.DataFrame(rows), ["x"], baseline="base"), recipe="r", experiment="r",
                  tracking_uri="sqlite://", plots={}, summary_lines=[])  # fmt: skip
    assert "2 seed pair(s) left out (timed under load)" in text


def test_first_to_target_prefers_a_variant_that_got_there_in_every_seed():
    """Time to target is averaged over the seeds that reached it: `lucky` reached 0.5 in one seed
    of three (4 s) and was named first ahead of `base`, which reached it in all three (10 s)."""
    rows = []
    for s in range(3):
        rows += [_row("base", s, 0.8), _row("lucky", s, 0.8)]
        rows[-2]["time_to_target_s"] = 10.0 + s
        rows[-1]["time_to_target_s"] = 4.0 if s == 0 else float("nan")
    lines = summary_lines(build_tables(pd.DataFrame(rows), ["x"], baseline="base", target_acc=0.5))
    assert any(
        line.startswith("First to 0.5 test (no validation split) accuracy: `base`") for line in lines
    ), lines
    for row in rows:  # no variant reached it every time: the one named says in how many seeds
        if row["group"] == "base":
            row["time_to_target_s"] = float("nan")
    lines = summary_lines(build_tables(pd.DataFrame(rows), ["x"], baseline="base", target_acc=0.5))
    assert any("`lucky` after 4.0 s of training (geometric mean, reached in 1 of 3 seeds)" in line
               for line in lines), lines  # fmt: skip


def test_a_real_speed_difference_is_called_once_enough_seeds_narrow_its_interval():
    """A busy host: ±20% per run. A variant 1.22× faster, over 20 seed blocks: its interval is
    [1.11, 1.35]. The noise floor used to be the 95% quantile of single A/A pairs (1.22× here), which
    no number of seeds shrinks, so the variant stayed 'undecided' for ever. The floor is now the A/A
    arms' own mean ratio: what does not average out."""
    noise = [0.2 * (-1) ** s for s in range(20)]
    rows = [_row("base", s, 0.8, 1000.0) for s in range(20)]
    rows += [_row("sched", s, 0.8, 1000.0 * math.exp(e)) for s, e in enumerate(noise)]
    rows += [_row("fast", s, 0.8, 1000.0 * math.exp(0.2 + e)) for s, e in enumerate(noise)]
    t = build_tables(pd.DataFrame(rows), ["x"], baseline="base", compute_neutral={"sched"})
    b = t.baseline.set_index("variant")
    assert t.speed_floor == pytest.approx(1.01)
    assert 1.10 < b.loc["fast", "train_img_s_lo"] < 1.12 and b.loc["fast", "speed_verdict"] == "faster"
    assert b.loc["sched", "speed_verdict"] not in ("faster", "slower")


def test_speed_verdict_rarely_errs_and_gains_power_with_seeds():
    """Simulated studies through the report's speed verdict (bench calibrate's speed rows): with 8%
    per-run noise, identical arms are almost never called faster/slower, and a true 1.25× speed-up
    is called at 8 seed blocks (the old single-pair floor called it in ~12% of studies)."""
    from bench.report import calibrate

    s = calibrate.Setting()
    rng = np.random.default_rng(5)
    for seeds in (3, 8):
        assert np.isin(calibrate.speed_verdicts(rng, s, 1.0, seeds, 300), ("faster", "slower")).mean() <= 0.05
    assert (calibrate.speed_verdicts(rng, s, 1.25, 8, 300) == "faster").mean() >= 0.8


def test_a_compute_neutral_variant_left_with_one_clean_run_sets_no_noise_floor():
    """Contention marked two of `sched`'s three runs; its one clean run happened to read 1.30×. That
    single pair set the noise floor to ±30%, so `amp`, 1.20× faster on every seed ([1.19, 1.21]),
    read 'same within the noise floor'. `sched2`, with three clean pairs at 1.00×, sets it now."""
    rows = [_row("base", s, 0.8, 1000.0) for s in range(3)]
    rows += [_row("sched", s, 0.8, v) for s, v in enumerate((1300.0, 1000.0, 1000.0))]
    for row in rows[-2:]:
        row["contention/speed_contaminated"] = 1.0
    rows += [_row("sched2", s, 0.8, 1000.0) for s in range(3)]
    rows += [_row("amp", s, 0.8, v) for s, v in enumerate((1200.0, 1210.0, 1190.0))]
    t = build_tables(pd.DataFrame(rows), ["x"], baseline="base", compute_neutral={"sched", "sched2"})
    assert (
        t.speed_floor == pytest.approx(1.01)
        and "1 compute-neutral variant(s), 3 seed pairs" in t.speed_floor_source
    )
    assert t.baseline.set_index("variant").loc["amp", "speed_verdict"] == "faster"


def test_an_axis_effect_on_unequal_seed_counts_is_taken_over_the_seeds_its_interval_uses():
    """The baseline finished 5 seeds (two easy ones at 0.80, three at 0.90), `x=b` only seeds 0 and
    1 (0.81 each). Seed for seed `x=b` is 0.01 better, and the interval said [+0.01, +0.01], but Δ
    acc was the difference of the seed means over unequal seeds: -0.05, outside its own interval."""
    rows = [_row("base", s, a) for s, a in enumerate((0.80, 0.80, 0.90, 0.90, 0.90))]
    rows += [{**_row("var", s, 0.81), "axis.x": "b"} for s in range(2)]
    for row in rows[:5]:
        row["axis.x"] = "a"
    axis = build_tables(pd.DataFrame(rows), ["x"], baseline="base").axes.iloc[0]
    assert axis["seeds"] == 2 and axis["acc_delta"] == pytest.approx(0.01)
    assert axis["acc_delta_lo"] <= axis["acc_delta"] <= axis["acc_delta_hi"]


def test_the_time_to_target_column_says_how_many_runs_it_timed_clean():
    """Both runs of `base` reached the target, one while another job took the cores: the column read
    '5.0 (2/2 reached)' for a time taken from one run, and '– (2/2 reached)' with both busy."""
    rows = [_row("base", 0, 0.8), _row("base", 1, 0.8)]
    for row, seconds, busy in zip(rows, (5.0, 30.0), (0, 1)):
        row["time_to_target_s"], row["contention/speed_contaminated"] = seconds, float(busy)
    t = build_tables(pd.DataFrame(rows), ["x"], baseline="base", target_acc=0.5)
    text = render(t, recipe="r", experiment="r", tracking_uri="sqlite://", plots={}, summary_lines=[])
    assert "5.0 (2/2 reached, 1 timed clean)" in text
