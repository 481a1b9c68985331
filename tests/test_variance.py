"""``bench report --variance``: the init / data / residual split of run-to-run variance. The
estimator on synthetic crossed designs with planted components (point estimates, interval
coverage, truncation), then end to end on a real tiny 3 × 3 crossed run through the CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.report.variance import complete_grid, decompose, split_runs
from tests.helpers import bench_main as bench  # the CLI's parsing and output, in this process
from tests.helpers import fresh_store
from tests.recipes import tiny_recipe, write_recipe

PLANTED = {"init": 0.02**2, "data": 0.01**2, "residual": 0.005**2}


def crossed(rng: np.random.Generator, n_init: int = 6, n_data: int = 6, sd=(0.02, 0.01, 0.005)) -> np.ndarray:
    """Accuracies ``0.6 + a_i + b_j + e_ij`` on an init × data grid."""
    a = rng.normal(0, sd[0], (n_init, 1))
    b = rng.normal(0, sd[1], (1, n_data))
    return 0.6 + a + b + rng.normal(0, sd[2], (n_init, n_data))


def test_planted_components_lie_in_their_intervals_and_shares_add_up():
    t = decompose(crossed(np.random.default_rng(7))).set_index("component")
    for name, true in PLANTED.items():
        assert t.var_lo[name] <= true <= t.var_hi[name], name
        assert t.var_lo[name] <= t.variance[name] <= t.var_hi[name], name
    assert t.variance["init"] > t.variance["data"] > t.variance["residual"]  # the order planted
    assert t.share[list(PLANTED)].sum() == pytest.approx(1.0)
    assert t.variance["total"] == pytest.approx(t.variance[list(PLANTED)].sum())
    assert not t.truncated.any()


def test_intervals_cover_the_planted_components_at_about_the_nominal_rate():
    rng = np.random.default_rng(2024)
    total = sum(PLANTED.values())
    hits = {f"{k}{part}": 0 for k in PLANTED for part in ("", "_share")}
    sims = 300
    for _ in range(sims):
        t = decompose(crossed(rng), draws=4000, seed=int(rng.integers(2**31))).set_index("component")
        for k, true in PLANTED.items():
            hits[k] += t.var_lo[k] <= true <= t.var_hi[k]
            hits[f"{k}_share"] += t.share_lo[k] <= true / total <= t.share_hi[k]
    coverage = {k: v / sims for k, v in hits.items()}
    # nominal 0.95; 300 simulations give a binomial sd of 0.013, so [0.90, 0.99] is ~4 sd wide
    assert all(0.90 <= c <= 0.99 for c in coverage.values()), coverage


def test_a_component_absent_from_the_data_is_truncated_at_zero_and_flagged():
    rng = np.random.default_rng(3)
    for _ in range(20):  # with no init effect the moment estimate is negative about half the time
        t = decompose(crossed(rng, 4, 4, sd=(0.0, 0.01, 0.005))).set_index("component")
        if t.moment_estimate["init"] < 0:
            break
    assert t.truncated["init"] and t.variance["init"] == 0 and t.share["init"] == 0
    assert not t.truncated["data"] and t.var_lo["init"] == 0


def test_the_interval_is_seeded_so_a_report_is_reproducible():
    y = crossed(np.random.default_rng(1), 4, 4)
    pd.testing.assert_frame_equal(decompose(y), decompose(y))


def test_a_missing_run_drops_the_seed_that_leaves_the_largest_complete_grid():
    cells = pd.DataFrame(
        [(i, d, 0.5 + i / 10 + d / 100) for i in range(4) for d in range(3) if (i, d) != (2, 1)],
        columns=["init_seed", "data_seed", "value"],
    )
    grid, dropped = complete_grid(cells)
    assert grid.shape == (3, 3) and dropped == ["init_seed=2"]


def test_runs_without_a_crossed_design_give_no_split():
    # seeds only: every run's init and data stream is its seed, the diagonal of the grid
    runs = pd.DataFrame({"group": "base", "status": "finished", "init_seed": [0, 1, 2],
                         "data_seed": [0, 1, 2], "test/acc": [0.5, 0.6, 0.55]})  # fmt: skip
    assert split_runs(runs) == {}


def test_variance_without_a_crossed_design_exits_2_naming_the_recipe_and_keys(tmp_path, tiny_image_folder):
    path = write_recipe(tmp_path / "plain.yaml", {**tiny_recipe(tiny_image_folder), "seeds": [0, 1, 2]})
    results = tmp_path / "results"
    proc = bench("report", "--variance", str(path), "--results-dir", str(results))
    assert proc.returncode == 2, proc.stderr
    message = proc.stderr.strip()
    assert message.count("\n") == 0 and "Traceback" not in message
    assert str(path) in message and "init_seeds" in message and "data_seeds" in message
    assert "runs 3 of the 3 x 3 init x data seed pairs" in message  # seed drives both
    assert not (results / "plain").exists()  # refused before reading or writing anything


@pytest.mark.slow
def test_bench_run_then_report_variance_through_the_cli(tmp_path, tiny_image_folder):
    from mlflow.tracking import MlflowClient

    recipe = tiny_recipe(tiny_image_folder, name="tinyvar", train__epochs=1)
    recipe.update(seeds=[0], init_seeds=[0, 1, 2], data_seeds=[0, 1, 2])
    path = write_recipe(tmp_path / "tinyvar.yaml", recipe)
    results, uri = tmp_path / "results", fresh_store(tmp_path / "mlflow.db")
    store = ["--results-dir", str(results), "--tracking-uri", uri]
    ran = bench("run", str(path), *store)
    assert ran.returncode == 0, ran.stderr[-2000:]
    proc = bench("report", "--variance", str(path), *store)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "test/acc over 3 init × 3 data seeds" in out
    for label in ("initialisation (init_seed)", "data order + augmentation (data_seed)",
                  "interaction + run nondeterminism", "share of total [CI]"):  # fmt: skip
        assert label in out
    assert "cannot be told apart" in out

    # the CSV against the MLflow runs, decomposed here by least squares on the additive model
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("tinyvar")
    acc = np.full((3, 3), np.nan)
    for r in client.search_runs([exp.experiment_id]):
        tags = r.data.tags
        if "mlflow.parentRunId" not in tags:
            continue  # the recipe's parent run
        acc[int(tags["bench.init_seed"]), int(tags["bench.data_seed"])] = r.data.metrics["test/acc"]
    assert not np.isnan(acc).any()
    rows, cols = np.indices(acc.shape)
    design = np.column_stack(
        [np.ones(9), *(rows.ravel() == i for i in (1, 2)), *(cols.ravel() == j for j in (1, 2))]
    )
    _, rss, *_ = np.linalg.lstsq(design.astype(float), acc.ravel(), rcond=None)
    ms_res = float(rss[0]) / 4 if len(rss) else 0.0
    ms_init = 3 * acc.mean(axis=1).var(ddof=1)
    ms_data = 3 * acc.mean(axis=0).var(ddof=1)
    expected = {
        "init": max((ms_init - ms_res) / 3, 0),
        "data": max((ms_data - ms_res) / 3, 0),
        "residual": ms_res,
    }

    csv = pd.read_csv(results / "tinyvar" / "report" / "variance.csv").set_index("component")
    assert list(csv.index) == ["init", "data", "residual", "total"]
    assert (csv["variant"] == "base").all() and (csv["n_init"] == 3).all() and (csv["n_data"] == 3).all()
    for name, value in expected.items():
        assert csv.loc[name, "variance"] == pytest.approx(value, abs=1e-12)
        assert csv.loc[name, "var_lo"] <= csv.loc[name, "variance"] <= csv.loc[name, "var_hi"]
    assert csv.loc["total", "variance"] == pytest.approx(sum(expected.values()), abs=1e-12)
    if csv.loc["total", "variance"] > 0:
        assert csv.loc[["init", "data", "residual"], "share"].sum() == pytest.approx(1.0)

    report = (results / "tinyvar" / "report.md").read_text()
    assert "## Run-to-run variance: initialisation vs data order" in report
    assert "| component | sd | variance [CI] | share of total [CI] |" in report
