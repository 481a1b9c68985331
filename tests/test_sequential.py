"""Deciding with as few seeds as the question needs: the confidence sequence keeps its error rates
however often it is looked at, the calibration measures them through bench's own decision code,
and --until-decided adds seeds only where a comparison is undecided, as ordinary variants."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bench.execution.until_decided import UntilDecided, next_variants, with_seed
from bench.recipe.load import load_recipe
from bench.report import calibrate, sequential, stats
from tests.recipes import tiny_recipe, write_recipe


def test_peeking_after_every_seed_keeps_the_error_rate():
    """A/A, one look after every seed from 3 to 20: the report's paired t-interval stopped at its
    first exclusion of 0 errs far above α; the group-sequential procedure (the very rounds
    --until-decided runs, equivalence switched off) stays below it."""
    rng = np.random.default_rng(1)
    studies = 400
    d = rng.normal(0, 0.002, (studies, 20))
    naive = np.mean([
        any(abs(x[:n].mean()) > stats.t_quantile(0.975, n - 1) * x[:n].std(ddof=1) / np.sqrt(n) for n in range(3, 21))
        for x in d
    ])  # fmt: skip
    s = calibrate.Setting(margin=1e-12, start_seeds=3, max_seeds=20)
    verdicts, _ = calibrate.until_decided(rng, s, np.zeros(1), studies=2000)
    assert naive > 0.15  # the reason a fixed-n interval cannot be peeked at
    assert np.isin(verdicts, ("better", "worse")).mean() <= 0.05 + 0.01  # 2,000 studies: ±0.005 noise


def test_one_comparison_looked_at_after_every_seed_errs_at_most_alpha():
    """Two arms, a look at every seed count from 3 to 12, equivalence switched off: 100,000 A/A
    studies through the rounds --until-decided runs. With the normal-theory levels used as t
    quantiles (Jennison & Turnbull's significance level approach) 5.6% ended "better" or "worse"."""
    s = calibrate.Setting(margin=1e-12, start_seeds=3, max_seeds=12)
    verdicts, _ = calibrate.until_decided(np.random.default_rng(11), s, np.zeros(1), studies=100_000)
    assert np.isin(verdicts, ("better", "worse")).mean() <= 0.05 + 0.0015  # sd 0.0007


def test_t_levels_spend_alpha_look_by_look():
    """The simulated levels: the first look's is exact (a t-test at the α it may spend), and an
    independent simulation of the same two-arm design crosses them by look k with probability α(t_k)."""
    from scipy import stats as st

    levels = np.array(sequential.t_levels(3, 8, 0.05, 2))
    assert levels[0] == pytest.approx(float(sequential.spent(3 / 8, 0.05)))
    x = np.random.default_rng(99).standard_normal((200_000, 2, 8))
    n = np.arange(3, 9)
    total = np.cumsum(x, axis=2)[:, :, n - 1]
    ss = (np.cumsum(x * x, axis=2)[:, :, n - 1] - total**2 / n).sum(axis=1)
    t = np.abs(total[:, 1] - total[:, 0]) / n / np.sqrt(ss / (2 * (n - 1)) * 2 / n)
    crossed = np.maximum.accumulate(t >= st.t.isf(levels / 2, 2 * (n - 1)), axis=1).mean(axis=0)
    assert crossed == pytest.approx(sequential.spent(n / 8, 0.05), abs=0.0015)


def test_one_look_is_the_fixed_two_sample_t_test():
    """With a single planned look the procedure is the pooled two-sample t-test at α: its interval
    is scipy's, its verdict flips exactly where scipy's p crosses 0.05."""
    from scipy import stats as st

    assert sequential.t_levels(8, 8, 0.05, 2) == pytest.approx((0.05,))
    rng = np.random.default_rng(4)
    for shift in np.linspace(0, 0.004, 9):
        base, var = rng.normal(0.9, 0.002, 8), rng.normal(0.9 + shift, 0.002, 8)
        by_seed = {"b": dict(enumerate(base)), "v": dict(enumerate(var))}
        s = sequential.decide_family(by_seed, "b", ["v"], alpha=0.05, margin=1e-9, first=8, last=8)["v"]
        ci = st.ttest_ind(var, base).confidence_interval(0.95)
        assert (s.lo, s.hi) == pytest.approx((ci.low, ci.high), rel=1e-9)
        p = st.ttest_ind(var, base).pvalue
        assert s.verdict == ("undecided" if p > 0.05 else "better" if s.diff > 0 else "worse")


def test_the_spread_is_pooled_over_the_study_but_never_below_the_pair():
    """Ten quiet arms lend their degrees of freedom to a comparison (a narrower interval than its
    two arms alone give), but a noisy arm is judged on its own spread, not the quiet pool's."""
    rng = np.random.default_rng(5)
    quiet = {f"q{i}": dict(enumerate(rng.normal(0.9, 0.001, 4))) for i in range(10)}
    pair = {"b": dict(enumerate(rng.normal(0.9, 0.001, 4))), "v": dict(enumerate(rng.normal(0.9, 0.001, 4)))}
    alone = sequential.decide_family(pair, "b", ["v"], alpha=0.05, margin=0.01, first=4, last=4)["v"]
    pooled = sequential.decide_family(pair | quiet, "b", ["v"], alpha=0.05, margin=0.01, first=4, last=4)["v"]
    assert pooled.df == 12 * 3 and pooled.hi - pooled.lo < alone.hi - alone.lo
    noisy = pair | {"v": dict(enumerate(rng.normal(0.9, 0.02, 4)))}
    pooled = sequential.decide_family(noisy | quiet, "b", ["v"], alpha=0.05, margin=0.01, first=4, last=4)[
        "v"
    ]
    own = np.var(list(noisy["v"].values()), ddof=1) + np.var(list(noisy["b"].values()), ddof=1)
    assert (pooled.hi - pooled.lo) / 2 >= stats.t_quantile(0.975, pooled.df) * np.sqrt(own / 4)


def test_calibration_error_rates_through_bench_decision_code():
    """A reduced `bench calibrate` (sequential rows, 2,000 studies each): family-wise false
    better/worse over A/A studies of 10 variants stays at most α (also when the arms' spreads differ
    ×½..×2), false 'equivalent' at a true difference on the margin at most α, a true 0 ends
    'equivalent' or at the cap, and a 0.2-point effect at sd 0.14 points is found with ≥ 70% power
    in a median of ≤ 7 seeds per arm (the old confidence sequence: 52% in 11)."""
    rows = calibrate.calibrate(calibrate.Setting(studies=2000), seed=3, fixed_design=False)

    def row(start: str) -> dict:
        (hit,) = [r for r in rows if r["quantity"].startswith(start)]
        return hit

    assert row("A/A, 10 variants: P(any false")["value"] <= 0.05 + 0.01
    assert row("A/A, 10 variants, unequal sd")["value"] <= 0.05 + 0.01
    assert row("true Δ = margin 0.003, 1 comparison")["value"] <= 0.05
    assert row("true Δ = margin for all 10")["value"] <= 0.05
    power = row("power at Δ 0.002, sd 0.0014, 1 comparison")
    assert power["value"] >= 0.70 and power["seeds_median"] <= 7
    zero, _ = calibrate.until_decided(np.random.default_rng(6), calibrate.Setting(), np.zeros(1))
    assert np.isin(zero, ("equivalent", "undecided")).mean() >= 0.95 and (zero == "equivalent").mean() >= 0.9
    strong = calibrate.Setting(effect=0.006, max_seeds=8)
    verdicts, seeds = calibrate.until_decided(
        np.random.default_rng(7), strong, np.array([strong.effect]), studies=500
    )
    assert (verdicts[:, 0] == "better").mean() >= 0.95 and np.median(seeds) <= 4


def _two_comparisons(tmp_path, tiny_image_folder):
    recipe = tiny_recipe(tiny_image_folder, name="seq", matrix={"train.label_smoothing": [0.0, 0.1, 0.2]})
    recipe["seeds"] = [0, 1, 2]
    recipe["baseline"] = "label_smoothing=0"
    return load_recipe(write_recipe(tmp_path / "seq.yaml", recipe))


def test_added_seeds_are_the_variants_a_recipe_listing_them_would_have(tmp_path, tiny_image_folder):
    loaded = _two_comparisons(tmp_path, tiny_image_folder)
    wider = load_recipe(tmp_path / "seq.yaml", ["seeds=[0,1,2,3,4]"])
    listed = {(v.group, v.seed): (v.name, v.run_key) for v in wider.variants}
    for v in loaded.variants:
        for seed in (3, 4):
            added = with_seed(v, seed)
            assert (added.name, added.run_key) == listed[(v.group, seed)]


def test_only_undecided_comparisons_and_the_baseline_get_a_seed(tmp_path, tiny_image_folder):
    """After 6 seeds ls=0.1 is clearly better (decided), ls=0.2 noisy around 0: the next round adds
    seed 6 to ls=0.2 and the baseline only; at the cap nothing more is added, and the decided
    comparison keeps its verdict and interval."""
    loaded = _two_comparisons(tmp_path, tiny_image_folder)
    rng = np.random.default_rng(0)
    base = 0.80 + rng.normal(0, 0.01, 7)
    acc = {"label_smoothing=0": base, "label_smoothing=0.1": base + 0.1 + rng.normal(0, 0.002, 7),
           "label_smoothing=0.2": base + rng.normal(0, 0.03, 7)}  # fmt: skip
    many = [with_seed(v, s) for v in loaded.variants if v.seed == 0 for s in range(7)]
    rows = [
        {"group": v.group, "seed": v.seed, "status": "finished", "test/acc": acc[v.group][v.seed]}
        for v in many
    ]
    until = UntilDecided(max_seeds=7, min_effect=0.005)

    def round_after(known):
        have = {(v.group, v.seed) for v in known}
        return next_variants(loaded, known, [r for r in rows if (r["group"], r["seed"]) in have], until)

    new, verdicts = round_after([v for v in many if v.seed < 6])
    assert verdicts["label_smoothing=0.1"].verdict == "better"
    assert verdicts["label_smoothing=0.2"].verdict == "undecided"
    assert sorted((v.group, v.seed) for v in new) == [("label_smoothing=0", 6), ("label_smoothing=0.2", 6)]
    new, final = round_after([v for v in many if v.seed < 6 or v.group != "label_smoothing=0.1"])
    assert new == []  # ls=0.2 at the cap, ls=0.1 decided
    # the report reads the finished study (baseline and ls=0.2 with a 7th seed, the pooled spread
    # with them) and still gives ls=0.1 the interval the runner stopped on
    decided, later = verdicts["label_smoothing=0.1"], final["label_smoothing=0.1"]
    assert (later.verdict, later.n, later.lo, later.hi) == (decided.verdict, 6, decided.lo, decided.hi)


@pytest.mark.slow
def test_bench_run_until_decided_adds_seeds_and_resumes(tmp_path, tiny_image_folder):
    """Real training: 2 seeds cannot decide anything (the first look is at 3 paired seeds), so
    both arms get seed 2 and stop at --max-seeds 3; the runs are ordinary MLflow children, the
    report shows the sequential verdict, and rerunning the command trains nothing new."""
    from tests.helpers import bench_main as bench  # in process: the interpreter start is not under test
    from tests.helpers import fresh_store

    recipe = tiny_recipe(tiny_image_folder, name="until", matrix={"train.label_smoothing": [0.0, 0.1]})
    recipe["seeds"] = [0, 1]
    recipe["train"]["epochs"] = 1
    path = write_recipe(tmp_path / "until.yaml", recipe)
    args = [
        str(path),
        "--results-dir",
        str(tmp_path / "results"),
        "--tracking-uri",
        fresh_store(tmp_path / "m.db"),
    ]
    proc = bench("run", *args, "--until-decided", "--max-seeds", "3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "until decided:" in proc.stderr and "adding" in proc.stderr
    table = pd.read_csv(tmp_path / "results" / "until" / "runs.csv")
    assert sorted(table["seed"]) == [0, 0, 1, 1, 2, 2] and set(table["status"]) == {"finished"}
    again = bench("run", *args, "--until-decided", "--max-seeds", "3")
    assert again.returncode == 0 and "epoch 1/1" not in again.stderr  # nothing retrained
    report = bench("report", *args)
    assert report.returncode == 0, report.stderr[-3000:]
    text = (tmp_path / "results" / "until" / "report.md").read_text()
    assert "Sequential verdicts (--until-decided)" in text and "undecided" in text


def test_report_summary_of_an_until_decided_study_gives_the_sequential_verdicts(tmp_path, capsys):
    """First-hour smoke_until_decided: stopped undecided at the cap, its summary said 'Equivalent to
    the baseline within ±0.02' from the fixed-design TOST, which assumes a seed count fixed in
    advance. The summary now gives the sequential verdict the run stopped on."""
    from mlflow import MlflowClient

    from bench.cli import main
    from tests.helpers import log_study

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    base = [0.444, 0.450, 0.414, 0.431, 0.354, 0.322]  # the measured per-seed accuracies
    smooth = [0.445, 0.454, 0.413, 0.423, 0.367, 0.351]
    log_study(uri, "ud", {"label_smoothing=0": {"acc": base}, "label_smoothing=0.1": {"acc": smooth}})
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("ud").experiment_id
    settings = {"alpha": 0.05, "min_effect": 0.02, "max_seeds": 6, "family": 1,
                "baseline": "label_smoothing=0", "first_look": 3}  # fmt: skip
    parent = client.create_run(
        exp, tags={"bench.kind": "recipe", sequential.SETTINGS_TAG: json.dumps(settings)}
    )
    client.set_terminated(parent.info.run_id)
    recipe = tiny_recipe(tmp_path, "ud", baseline="label_smoothing=0", seeds=[0, 1, 2])
    recipe |= {"matrix": {"train.label_smoothing": [0.0, 0.1]}, "report": {"min_effect": 0.02}}
    path = write_recipe(tmp_path / "ud.yaml", recipe)
    assert main(["report", str(path), "--tracking-uri", uri, "--results-dir", str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out.replace("`", "")
    assert "Undecided at the seed cap (sequential): label_smoothing=0.1 (+0.0063, [-0." in out, out
    assert "Equivalent to the baseline" not in out


def test_sequential_summary_of_a_variant_without_a_paired_seed_prints_no_nan():
    """`b` finished only on seed 7, which the baseline never ran: its sequential verdict is 'too few
    seeds' and the summary printed '`b` (+nan, n=0)'."""
    from bench.report.build import summary_lines
    from bench.report.tables import build_tables

    rows = [{"run_id": f"{g}{s}", "variant": f"{g},seed={s}", "group": g, "seed": s, "status": "finished",
             "reason": "", "axis.x": g, "test/acc": acc, "throughput/train_img_s": 1000.0}
            for g, s, acc in [("base", 0, 0.80), ("base", 1, 0.81), ("base", 2, 0.82), ("b", 7, 0.80)]]  # fmt: skip
    runs = pd.DataFrame(rows)
    t = build_tables(runs, ["x"], baseline="base")
    settings = {"alpha": 0.05, "min_effect": 0.005, "max_seeds": 12, "family": 1, "first_look": 3}
    t.baseline, t.sequential = sequential.add_sequential(t.baseline, runs, "base", settings), settings
    [line] = [line for line in summary_lines(t) if "(sequential)" in line]
    assert line == "Too few paired seeds for a verdict (sequential): `b` (no seed paired with the baseline)."
