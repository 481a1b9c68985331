"""``bench report`` end to end: a real tiny matrix (2 variants x 2 seeds, plus an amp_fp16
variant that is skipped without CUDA), then the report's numbers checked against the MLflow
runs they came from, computed here independently."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from scipy import stats as st

from bench.cli import main as cli
from bench.execution.runner import RecipeRunner
from bench.recipe.load import load_recipe
from tests.helpers import fresh_store
from tests.recipes import tiny_recipe, write_recipe

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reported(tiny_image_folder, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    recipe = tiny_recipe(
        tiny_image_folder, name="tinyreport", seeds=[0, 1], target_acc=0.5, train__epochs=2,
        train__optimizer={"name": "sgd", "lr": 0.01, "momentum": 0.9},
        data__val_size=0.2,
        matrix={"train.scheduler": [{"name": "cosine"}, {"name": "onecycle"}],
                "include": [{"train.precision": "amp_fp16"}, {"train.ema": {"decay": 0.99, "every": 1}}]},
    )  # fmt: skip
    recipe["baseline"] = "scheduler=onecycle"
    path = write_recipe(tmp / "tinyreport.yaml", recipe)
    uri = fresh_store(tmp / "mlflow.db")
    results = tmp / "results"
    RecipeRunner(load_recipe(path), results_dir=results, tracking_uri=uri).run()
    assert cli(["report", str(path), "--results-dir", str(results), "--tracking-uri", uri]) == 0
    return path, uri, results / "tinyreport"


def _runs(uri: str) -> pd.DataFrame:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("tinyreport")
    rows = []
    for r in client.search_runs([exp.experiment_id]):
        if "mlflow.parentRunId" not in r.data.tags:
            continue
        rows.append({"group": r.data.tags["bench.group"], "seed": int(r.data.tags["bench.seed"]),
                     "status": r.data.tags["bench.status"], "reason": r.data.tags["bench.reason"], **r.data.metrics})  # fmt: skip
    return pd.DataFrame(rows)


def test_variant_table_matches_mlflow(reported):
    _, uri, out = reported
    runs = _runs(uri)
    table = pd.read_csv(out / "report" / "variants.csv").set_index("variant")
    assert list(table.index) == ["scheduler=cosine", "scheduler=onecycle", "precision=amp_fp16", "ema=on"]
    for group in ("scheduler=cosine", "scheduler=onecycle"):
        done = runs[(runs["group"] == group) & (runs["status"] == "finished")]
        assert len(done) == 2 and table.loc[group, "seeds"] == 2
        clean = done.get("contention/speed_contaminated", pd.Series(0.0, index=done.index)).fillna(0) < 0.5
        speed = done.loc[clean, "throughput/train_img_s"]  # runs timed under load are left out
        assert table.loc[group, "train_img_s_median"] == pytest.approx(speed.median(), rel=1e-9, nan_ok=True)
        assert (table.loc[group, "train_img_s_min"], table.loc[group, "train_img_s_max"]) == (
            pytest.approx(speed.min(), rel=1e-9, nan_ok=True), pytest.approx(speed.max(), rel=1e-9, nan_ok=True),
        )  # fmt: skip
        for metric, short in (
            ("test/acc", "acc"),
            ("memory/peak_rss_mb", "memory_mb"),
        ):
            x = done[metric].to_numpy()
            mean, sd = x.mean(), x.std(ddof=1)
            half = st.t.ppf(0.975, len(x) - 1) * sd / math.sqrt(len(x))
            row = table.loc[group]
            assert row[f"{short}_mean"] == pytest.approx(mean, rel=1e-9)
            assert row[f"{short}_std"] == pytest.approx(sd, rel=1e-9, abs=1e-12)
            assert row[f"{short}_lo"] == pytest.approx(mean - half, rel=1e-9, abs=1e-12)
            assert row[f"{short}_hi"] == pytest.approx(mean + half, rel=1e-9, abs=1e-12)
        # times: geometric mean, interval on the log scale (never below zero)
        logs = np.log(done["time/wall_s"].to_numpy())
        half = st.t.ppf(0.975, len(logs) - 1) * logs.std(ddof=1) / math.sqrt(len(logs))
        assert table.loc[group, "wall_s_mean"] == pytest.approx(math.exp(logs.mean()), rel=1e-9)
        assert table.loc[group, "wall_s_lo"] == pytest.approx(math.exp(logs.mean() - half), rel=1e-9)
        assert table.loc[group, "wall_s_hi"] == pytest.approx(math.exp(logs.mean() + half), rel=1e-9)
    assert table.loc["precision=amp_fp16", "seeds"] == 0
    assert table.loc["precision=amp_fp16", "status"] == "2 skipped"


def test_baseline_table_matches_mlflow(reported):
    _, uri, out = reported
    runs = _runs(uri)
    done = runs[runs["status"] == "finished"]
    base = done[done["group"] == "scheduler=onecycle"].set_index("seed")
    other = done[done["group"] == "scheduler=cosine"].set_index("seed")
    table = pd.read_csv(out / "report" / "baseline.csv").set_index("variant")
    row = table.loc["scheduler=cosine"]
    d = (other["test/acc"] - base["test/acc"]).sort_index().to_numpy()
    assert row["pairs"] == 2 and row["acc_diff"] == pytest.approx(d.mean(), abs=1e-12)
    half = st.t.ppf(0.975, 1) * d.std(ddof=1) / math.sqrt(2)  # the paired t-interval
    assert row["acc_diff_lo"] == pytest.approx(d.mean() - half, abs=1e-12)
    assert row["acc_diff_hi"] == pytest.approx(d.mean() + half, abs=1e-12)
    assert row["verdict"] == "too few seeds"  # 2 seeds never settle a difference
    speed = "throughput/train_img_s"
    # paired by seed, geometric mean of the ratios, runs marked contaminated left out
    dirty = "contention/speed_contaminated"
    clean = [s for s in base.index if base.at[s, dirty] == 0 and other.at[s, dirty] == 0]
    logs = np.log(other.loc[clean, speed] / base.loc[clean, speed])
    expected = math.exp(logs.mean()) if len(clean) else math.nan
    assert row["train_img_s_ratio"] == pytest.approx(expected, rel=1e-9, nan_ok=True)
    assert row["speed_left_out"] == len(base) - len(clean)  # seed pairs the ratio lost to busy runs
    mem = "memory/peak_rss_mb"
    mem_ratio = math.exp(np.log(other[mem] / base[mem]).mean())
    assert row["memory_ratio"] == pytest.approx(mem_ratio, rel=1e-9)
    assert table.loc["scheduler=onecycle", "acc_diff"] == 0


def test_report_markdown_plots_and_artifacts(reported):
    _, uri, out = reported
    text = (out / "report.md").read_text()
    runs = _runs(uri)
    cos = runs[(runs["group"] == "scheduler=cosine") & (runs["status"] == "finished")]
    assert f"{cos['test/acc'].mean():.4f} ± {cos['test/acc'].std(ddof=1):.4f}" in text
    assert "Baseline: `scheduler=onecycle`" in text
    assert "amp_fp16 needs a CUDA device" in text  # skipped runs are listed with their reason
    assert "time to 0.5" in text
    for name in ("cost_card.png", "tradeoff.png", "curves.png", "lr.png"):
        assert (out / "report" / name).stat().st_size > 10_000
        assert f"report/{name}" in text
    axes = pd.read_csv(out / "report" / "axes.csv")
    assert set(axes["axis"]) == {"scheduler", "ema"}  # precision has one scored value only
    pareto = pd.read_csv(out / "report" / "pareto.csv")
    variants = pd.read_csv(out / "report" / "variants.csv")
    timed = variants["train_img_s_median"].notna().any()  # a busy machine leaves every run out of it
    assert pareto["front_throughput"].any() == timed and not pareto["front_memory"].any()  # RSS: off it
    assert "## Provenance" in text  # env.* tags once the runner logs them; a note otherwise
    html = (out / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == 4 and not re.search(
        r"""(src|href)=["'](?!data:)""", html
    )
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("tinyreport")
    (parent,) = client.search_runs([exp.experiment_id], filter_string="tags.`bench.kind` = 'recipe'")
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/report.md", "report/report.html", "report/cost_card.png", "report/curves.png"} <= logged


def test_report_by_experiment_name(reported, tmp_path):
    _, uri, _ = reported
    args = [
        "report",
        "--experiment",
        "tinyreport",
        "--tracking-uri",
        uri,
        "--results-dir",
        str(tmp_path),
        "--no-log",
    ]
    assert cli(args) == 0
    assert "scheduler=cosine" in (tmp_path / "tinyreport" / "report.md").read_text()
    assert cli(["report", "--experiment", "nope", "--tracking-uri", uri, "--results-dir", str(tmp_path)]) == 1


def test_report_lists_what_each_variant_changes(reported):
    _, _, out = reported
    text = (out / "report.md").read_text()
    section = text.split("## What each variant changes against the baseline", 1)[1].split("\n## ", 1)[0]
    assert "| `scheduler=onecycle` | baseline | – |" in section
    assert "| `scheduler=cosine` | 1 | `train.scheduler.name` onecycle->cosine |" in section
    # the include entry keeps the recipe's base scheduler (cosine): two keys against the baseline
    assert (
        "| `precision=amp_fp16` | 2 | `train.precision` fp32->amp_fp16; `train.scheduler.name` onecycle->cosine |"
        in section
    )


def test_ema_is_reported_on_its_delivered_model(reported):
    """Recomputed from the raw MLflow metrics: the EMA variant's accuracy and its Δ are its EMA
    model's (``test/acc_ema``), with the trained weights' (``test/acc_raw``) beside them."""
    _, uri, out = reported
    runs = _runs(uri)
    done = runs[runs["status"] == "finished"]
    ema = done[done["group"] == "ema=on"].set_index("seed")
    base = done[done["group"] == "scheduler=onecycle"].set_index("seed")
    variants = pd.read_csv(out / "report" / "variants.csv").set_index("variant")
    assert variants.loc["ema=on", "acc_mean"] == pytest.approx(ema["test/acc_ema"].mean(), abs=1e-12)
    assert variants.loc["ema=on", "acc_raw_mean"] == pytest.approx(ema["test/acc_raw"].mean(), abs=1e-12)
    assert variants.loc["ema=on", "delivered"] == "ema"
    baseline = pd.read_csv(out / "report" / "baseline.csv").set_index("variant")
    d = (ema["test/acc_ema"] - base["test/acc"]).sort_index()
    assert baseline.loc["ema=on", "acc_diff"] == pytest.approx(d.mean(), abs=1e-12)
    axes = pd.read_csv(out / "report" / "axes.csv").set_index(["axis", "value"])
    # ema=on is an include: compared with the one variant it differs from (the cosine default)
    cos = done[done["group"] == "scheduler=cosine"].set_index("seed")
    assert axes.loc[("ema", "on"), "acc_delta"] == pytest.approx(
        (ema["test/acc_ema"] - cos["test/acc"]).mean()
    )
    assert axes.loc[("ema", "on"), "design"] == "one cell: vs `scheduler=cosine` only"


def test_time_to_target_is_training_time_on_validation(reported):
    """Recomputed from the per-epoch history: seconds of training steps until val/acc first
    reaches the target; never negative and never more than the run's training time."""
    _, uri, out = reported
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("tinyreport")
    variants = pd.read_csv(out / "report" / "variants.csv").set_index("variant")
    for run in client.search_runs(
        [exp.experiment_id], filter_string="tags.`bench.group` = 'scheduler=cosine'"
    ):
        val = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "val/acc")}
        secs = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "time/train_epoch_s")}
        assert sorted(val) == sorted(secs) == [0, 1]
        assert sum(secs.values()) == pytest.approx(run.data.metrics["time/train_s"])
        assert run.data.metrics["time/train_s"] < run.data.metrics["time/wall_s"]
        assert 0 <= run.data.metrics["time/data_wait_frac"] < 1  # host time spent waiting for batches
    assert variants.loc["scheduler=cosine", "ttt_on"] == "val"
    assert (variants["ttt_s_lo"].dropna() > 0).all()
