"""Deciding with as few seeds as the question needs: the confidence sequence keeps its error rates
however often it is looked at, the calibration measures them through bench's own decision code,
and --until-decided adds seeds only where a comparison is undecided, as ordinary variants."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench import calibrate
from bench.execution.until_decided import UntilDecided, next_variants, with_seed
from bench.recipe.load import load_recipe
from bench.report import sequential, stats
from tests.recipes import tiny_recipe, write_recipe


def test_peeking_after_every_seed_keeps_the_error_rate():
    """A/A, one look after every seed from 2 to 20: the paired t-interval stopped at its first
    exclusion of 0 errs far above α; the confidence sequence stays below it."""
    rng = np.random.default_rng(1)
    naive = seq = 0
    studies = 400
    for _ in range(studies):
        d = rng.normal(0, 0.002, 20)
        naive += any(
            abs(d[:n].mean()) > stats.t_quantile(0.975, n - 1) * d[:n].std(ddof=1) / np.sqrt(n)
            for n in range(3, 21)
        )  # the report's paired t-interval, looked at after every seed
        seq += any(sequential.decide(d[:n], 0.05, 1e-9).verdict in ("better", "worse") for n in range(2, 21))
    assert naive / studies > 0.15  # the reason a fixed-n interval cannot be peeked at
    assert seq / studies <= 0.05


def test_confidence_sequence_factor_is_the_bayes_factor_boundary():
    """c_n solves BF_n(c_n) = 1/α (the closed form against the formula itself)."""
    for n in (5, 6, 10, 30):
        c, k, nu = sequential.cs_factor(n, 0.05), 1 + n * sequential.PRIOR_SCALE, n - 1
        bf = k**-0.5 * ((1 + c * c / nu) / (1 + c * c / (nu * k))) ** (n / 2)
        assert bf == pytest.approx(20, rel=1e-9)
    assert sequential.cs_factor(2, 0.05) == np.inf  # two seeds can never decide at 5%
    assert sequential.cs_factor(12, 0.05) > stats.t_quantile(0.975, 11)  # the price of looking often


def test_calibration_error_rates_through_bench_decision_code():
    """A reduced `bench calibrate`: family-wise false better/worse over A/A studies of 10 variants
    and false 'equivalent' at a true difference on the margin stay at most α (+ simulation slack);
    a large planted effect is found, with fewer seeds than the cap."""
    s = calibrate.Setting(studies=150, variants=10, max_seeds=8)
    rows = {(r["quantity"], r["design"].split(" ")[0]): r for r in calibrate.calibrate(s, seed=3)}
    by = {q.split(":")[0] + "|" + d + "|" + q: r for (q, d), r in rows.items()}
    aa = [r for k, r in by.items() if "A/A" in k and "false" in k]
    assert aa and all(r["value"] <= 0.05 + 0.03 for r in aa)
    tost = [r for k, r in by.items() if "TOST type I" in k]
    assert tost and all(r["value"] <= 0.05 + 0.03 for r in tost)
    strong = calibrate.Setting(studies=100, effect=0.006, max_seeds=8)
    one = [
        calibrate.until_decided(np.random.default_rng(i), strong, np.array([strong.effect]))
        for i in range(100)
    ]
    assert np.mean([v[0] == "better" for v, _ in one]) >= 0.8
    assert np.median([k[0] for _, k in one]) < strong.max_seeds


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
    seed 6 to ls=0.2 and the baseline only; at the cap nothing more is added."""
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
    new, _ = round_after([v for v in many if v.seed < 6 or v.group != "label_smoothing=0.1"])
    assert new == []  # ls=0.2 at the cap, ls=0.1 decided


@pytest.mark.slow
def test_bench_run_until_decided_adds_seeds_and_resumes(tmp_path, tiny_image_folder):
    """Real training: 2 seeds cannot decide anything (the confidence sequence is unbounded), so
    both arms get seed 2 and stop at --max-seeds 3; the runs are ordinary MLflow children, the
    report shows the sequential verdict, and rerunning the command trains nothing new."""
    from tests.test_cli import bench

    recipe = tiny_recipe(tiny_image_folder, name="until", matrix={"train.label_smoothing": [0.0, 0.1]})
    recipe["seeds"] = [0, 1]
    recipe["train"]["epochs"] = 1
    path = write_recipe(tmp_path / "until.yaml", recipe)
    args = [
        str(path),
        "--results-dir",
        str(tmp_path / "results"),
        "--tracking-uri",
        f"sqlite:///{tmp_path}/m.db",
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
