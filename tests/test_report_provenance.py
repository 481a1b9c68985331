"""Provenance, emulated bf16, the HTML report and side-by-side studies, on real MLflow stores
whose runs carry hand-set ``env.*`` tags (no training: the runs are logged the way the runner
logs them, with the values these tests need)."""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main as cli
from bench.execution.results import summary_text
from bench.measure import provenance
from bench.report.api import report_tables
from tests.helpers import CPU, log_study
from tests.recipes import write_recipe

GPU = {
    **CPU,
    "env.device_type": "cuda",
    "env.device_name": "NVIDIA H100 80GB HBM3",
    "env.cpu_native_bf16": "true",
}


@pytest.fixture(scope="module")
def uri(tmp_path_factory) -> str:
    """One SQLite store for the module (creating one costs seconds); each test has its experiment."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


def test_collect_records_versions_git_device_and_flags(tmp_path):
    import torch

    info = provenance.collect(torch.device("cpu"))
    assert all(k.startswith("env.") and isinstance(v, str) for k, v in info.items())
    root = Path(provenance.__file__).resolve().parents[2]
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert info["env.git_commit"] == head.stdout.strip() and info["env.git_dirty"] in ("true", "false")
    assert info["env.torch"] == torch.__version__.split("+")[0] and info["env.python"].count(".") == 2
    assert info["env.device_type"] == "cpu" and info["env.device_name"] == info["env.cpu_model"]
    assert info["env.cpu_native_bf16"] == str(provenance.native_bf16_cpu()).lower()
    assert info["env.allow_tf32_matmul"] == str(torch.backends.cuda.matmul.allow_tf32).lower()
    assert info["env.float32_matmul_precision"] == torch.get_float32_matmul_precision()
    flags = open("/proc/cpuinfo").read() if Path("/proc/cpuinfo").exists() else ""
    assert ("avx2" in info["env.cpu_flags"]) == (" avx2" in flags)
    hits = provenance._static.cache_info().hits
    provenance.collect("cpu")
    assert provenance._static.cache_info().hits == hits + 1  # git and versions read once per process
    assert provenance._git(tmp_path) == ("n/a", "n/a")  # not a repository: tolerated


def test_report_warns_when_runs_differ_in_device_or_versions(uri, tmp_path, capsys):
    log_study(uri, "mixed", {"base": {"acc": [0.8, 0.81, 0.82]},
                             "other": {"acc": [0.7, 0.72, 0.71], "env": {**GPU, "env.torch": "2.9.0"}}})  # fmt: skip
    assert (
        cli(["report", "--experiment", "mixed", "--tracking-uri", uri, "--results-dir", str(tmp_path)]) == 0
    )
    printed = capsys.readouterr().out
    assert (
        "warning: runs differ in env.device_name" in printed
        and "warning: runs differ in env.torch" in printed
    )
    md = (tmp_path / "mixed" / "report.md").read_text()
    assert "## Provenance" in md and "Normalisation: train." in md
    assert "Device: AMD EPYC (3 runs) / NVIDIA H100 80GB HBM3 (3 runs)" in md
    assert "**Warning:** runs differ in `env.torch`: 2.14.1 (base); 2.9.0 (other)" in md
    assert "commit `aaaaaaaaaaaa`" in md
    html = (tmp_path / "mixed" / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "runs differ in <code>env.device_name</code>" in html
    # self-contained: every image inline, nothing fetched from elsewhere
    assert not re.search(r"""(src|href)=["'](?!data:)""", html)
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) >= 3 and all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert (
        "report/cost_card.png" in md
        and (tmp_path / "mixed" / "report" / "cost_card.png").stat().st_size > 5000
    )


def test_report_md_images_resolve_beside_it_with_a_relative_results_dir(uri, tmp_path, monkeypatch):
    """The default results dir is relative ('results'): report.md's plots must be linked relative to
    report.md itself, or every markdown viewer shows them broken."""
    log_study(uri, "relative", {"base": {"acc": [0.8, 0.81, 0.82]}, "other": {"acc": [0.7, 0.72, 0.71]}})
    monkeypatch.chdir(tmp_path)
    assert cli(["report", "--experiment", "relative", "--tracking-uri", uri, "--results-dir", "res"]) == 0
    md_path = tmp_path / "res" / "relative" / "report.md"
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md_path.read_text())
    assert len(links) >= 3 and all((md_path.parent / link).is_file() for link in links), links


def test_an_edited_recipe_is_reported_by_its_latest_runs_not_as_more_seeds(uri, tmp_path, capsys):
    """Edit a recipe (new run keys, same variant names) and run it again: the report counts each
    variant and seed once, by its latest run, and says what it left out."""
    log_study(uri, "edited", {"base": {"acc": [0.8, 0.81, 0.82]}, "other": {"acc": [0.6, 0.61, 0.62]}})
    log_study(uri, "edited", {"base": {"acc": [0.8, 0.81, 0.82]}, "other": {"acc": [0.9, 0.91, 0.92]}}, "v2-")
    frames = report_tables(experiment="edited", tracking_uri=uri, results_dir=tmp_path)
    variants = frames["variants"].set_index("variant")
    assert variants.loc["other", "seeds"] == 3 and variants.loc["other", "acc_mean"] == pytest.approx(0.91)
    assert len(frames["runs"]) == 6
    assert (
        cli(["report", "--experiment", "edited", "--tracking-uri", uri, "--results-dir", str(tmp_path)]) == 0
    )
    assert "6 older run(s) of variants and seeds that ran again" in capsys.readouterr().out


def test_a_tune_study_is_reported_on_its_re_check_seeds_not_the_seeds_that_chose(uri, tmp_path):
    """`bench report recipes/smoke_tune.yaml`: trial 0 won on its tuning seed (0.9, the winner's
    curse) and was re-checked on fresh seeds 5-7 (about 0.6). The report averaged all four as
    "4 seed(s)"; the seed that chose the configuration is not evidence for it."""
    trial = {**CPU, "bench.kind": "trial"}
    log_study(
        uri, "tuned", {"trial=0": {"acc": [0.9], "env": trial}, "trial=1": {"acc": [0.5], "env": trial}}
    )
    recheck = {**CPU, "bench.kind": "recheck"}
    log_study(
        uri, "tuned", {"trial=0": {"acc": [0.6, 0.61, 0.62], "seeds": [5, 6, 7], "env": recheck}}, "re-"
    )
    frames = report_tables(experiment="tuned", tracking_uri=uri, results_dir=tmp_path)
    variants = frames["variants"].set_index("variant")
    assert variants.loc["trial=0", "seeds"] == 3 and variants.loc["trial=0", "acc_mean"] == pytest.approx(
        0.61
    )
    assert variants.loc["trial=1", "seeds"] == 0 and variants.loc["trial=1", "status"] == "1 tuning"
    assert set(frames["excluded"]["status"]) == {"tuning"} and len(frames["excluded"]) == 2
    assert "winner's curse" in frames["excluded"]["reason"].iloc[0]


def test_a_tune_study_without_a_finished_re_check_says_its_results_are_the_trials(uri, tmp_path, capsys):
    """Every re-check run failed (or none ran): the trials are all there is to report, and the
    report said nothing of their scores having chosen their own configuration."""
    trial = {**CPU, "bench.kind": "trial"}
    log_study(
        uri, "trials_only", {"trial=0": {"acc": [0.9], "env": trial}, "trial=1": {"acc": [0.5], "env": trial}}
    )
    assert (
        cli(["report", "--experiment", "trials_only", "--tracking-uri", uri, "--results-dir", str(tmp_path)])
        == 0
    )
    assert "2 tuning trial run(s) are reported as results" in capsys.readouterr().out


def test_emulated_bf16_is_said_next_to_the_variant(uri, tmp_path):
    log_study(uri, "bf", {"fp32": {"acc": [0.8, 0.8]}, "bf16": {"acc": [0.8, 0.8], "precision": "amp_bf16"},
                          "bf16native": {"acc": [0.8, 0.8], "precision": "amp_bf16",
                                         "env": {**CPU, "env.cpu_native_bf16": "true"}}})  # fmt: skip
    frames = report_tables(experiment="bf", tracking_uri=uri, results_dir=tmp_path)
    assert cli(["report", "--experiment", "bf", "--tracking-uri", uri, "--results-dir", str(tmp_path)]) == 0
    md = (tmp_path / "bf" / "report.md").read_text()
    assert "| `bf16` (bf16 emulated) |" in md and "| `bf16native` |" in md
    assert "emulated on a CPU without native bf16 (typically 20-40x slower than fp32)" in md
    assert set(frames) >= {
        "variants",
        "baseline",
        "axes",
        "pareto",
        "excluded",
        "provenance",
        "runs",
        "history",
    }


def test_oracle_accuracy_is_renamed_and_out_of_the_tables_and_val_selection_is_used(uri, tmp_path):
    log_study(uri, "old", {"a": {"acc": [0.8, 0.9], "metrics": {"test/acc_best": 0.95}, "val": (0.9, 0.5)}})
    frames = report_tables(experiment="old", tracking_uri=uri, results_dir=tmp_path)
    runs = frames["runs"]
    assert "test/acc_best" not in runs and (runs["test/acc_oracle"] == 0.95).all()
    assert not any("best" in c or "oracle" in c for c in frames["variants"].columns)
    # the test accuracy of the epoch validation picks (epoch 0: acc - 0.1), not the last epoch's
    v = frames["variants"].set_index("variant")
    assert v.loc["a", "acc_valsel_mean"] == pytest.approx(0.75) and v.loc["a", "acc_mean"] == pytest.approx(
        0.85
    )
    assert v.loc["a", "val_acc_mean"] == pytest.approx(0.5)
    frame = pd.DataFrame([{"variant": "a", "status": "finished", "test/acc": 0.8, "test/acc_best": 0.95,
                           "val/acc": 0.7}])  # fmt: skip
    text = summary_text(frame)
    assert "acc_best" not in text and "val/acc" in text and "0.9500" not in text


def test_cpu_memory_is_rss_and_off_the_front_unless_asked(uri, tmp_path):
    log_study(uri, "mem", {"a": {"acc": [0.8, 0.8]}, "b": {"acc": [0.7, 0.7]}})
    base = [
        "report",
        "--experiment",
        "mem",
        "--tracking-uri",
        uri,
        "--results-dir",
        str(tmp_path),
        "--no-log",
    ]
    assert cli(base) == 0
    md = (tmp_path / "mem" / "report.md").read_text()
    assert "process peak RSS (memory/peak_rss_mb)" in md and "front: acc vs memory" not in md
    assert not pd.read_csv(tmp_path / "mem" / "report" / "pareto.csv")["front_memory"].any()
    assert cli([*base, "--memory-front"]) == 0
    assert "front: acc vs memory" in (tmp_path / "mem" / "report.md").read_text()
    assert pd.read_csv(tmp_path / "mem" / "report" / "pareto.csv")["front_memory"].any()


def test_compare_two_studies_side_by_side(uri, tmp_path, tiny_image_folder):
    here, there = uri, f"sqlite:///{tmp_path / 'gpu.db'}"  # the GPU study in a store of its own
    log_study(here, "smoke", {"a": {"acc": [0.8, 0.82], "speed": [1000.0, 1200.0]}, "b": {"acc": [0.7, 0.7]}})
    log_study(there, "study", {"a": {"acc": [0.9, 0.9], "speed": [8000.0, 8800.0], "env": GPU}})
    gpu_results = tmp_path / "copied"  # a results folder as it would come back from the GPU machine
    assert (
        cli(["report", "--experiment", "study", "--tracking-uri", there, "--results-dir", str(gpu_results)])
        == 0
    )
    out = tmp_path / "here"
    args = ["report", "--experiment", "smoke", "--tracking-uri", here, "--results-dir", str(out), "--no-log"]
    assert cli([*args, "--compare", str(gpu_results / "study")]) == 0
    md = (out / "smoke" / "report.md").read_text()
    assert "## Side by side: `smoke` and `study`" in md
    assert "| `smoke` |" in md and "AMD EPYC" in md and "NVIDIA H100 80GB HBM3" in md
    side = pd.read_csv(out / "smoke" / "report" / "compare_study.csv").set_index("variant")
    assert side.loc["a", "img_s_ratio"] == pytest.approx(8400 / 1100)
    assert side.loc["a", "acc_diff"] == pytest.approx(0.09) and pd.isna(side.loc["b", "acc_b"])
    # the other study named by its recipe file instead, read from its own store
    recipe = {"name": "study", "data": {"name": "imagefolder", "root": str(tiny_image_folder)},
              "tracking": {"uri": there}}  # fmt: skip
    path = write_recipe(tmp_path / "study.yaml", recipe)
    frames = report_tables(experiment="smoke", tracking_uri=here, results_dir=out, compare=[path])
    assert frames["compare:study"].set_index("variant").loc["a", "img_s_ratio"] == pytest.approx(8400 / 1100)
    assert cli([*args, "--compare", str(tmp_path / "nowhere")]) != 0


def test_compare_with_a_study_of_other_variants_says_it_compares_nothing(uri, tmp_path, capsys):
    """`bench report smoke --compare results/mine`: no variant name in common, and the side-by-side
    table was rows of dashes without a word."""
    log_study(uri, "mine_a", {"scheduler=cosine": {"acc": [0.8, 0.82]}})
    log_study(uri, "mine_b", {"scheduler=step": {"acc": [0.7, 0.71]}})
    other = tmp_path / "b"
    assert cli(["report", "--experiment", "mine_b", "--tracking-uri", uri, "--results-dir", str(other)]) == 0
    out = tmp_path / "a"
    args = ["report", "--experiment", "mine_a", "--tracking-uri", uri, "--results-dir", str(out), "--no-log"]
    capsys.readouterr()
    assert cli([*args, "--compare", str(other / "mine_b")]) == 0
    assert "warning: --compare mine_b: no variant name is in both studies" in capsys.readouterr().out
    assert (
        "No variant name is in both studies: nothing is compared."
        in (out / "mine_a" / "report.md").read_text()
    )


def test_report_min_effect_is_read_and_leaves_run_keys_alone(tmp_path, tiny_image_folder):
    from bench.recipe.load import load_recipe
    from bench.report.api import resolve

    recipe = {
        "name": "keys",
        "data": {"name": "imagefolder", "root": str(tiny_image_folder)},
        "seeds": [0, 1],
    }
    plain = load_recipe(write_recipe(tmp_path / "plain.yaml", recipe))
    tuned = load_recipe(write_recipe(tmp_path / "tuned.yaml", {**recipe, "report": {"min_effect": 0.01}}))
    assert [v.run_key for v in plain.variants] == [v.run_key for v in tuned.variants]  # same runs
    assert resolve(tuned, results_dir=tmp_path).min_effect == 0.01 and plain.recipe.report.min_effect == 0.005
    bad = write_recipe(tmp_path / "bad.yaml", {**recipe, "report": {"min_efect": 0.01}})
    assert cli(["report", str(bad), "--results-dir", str(tmp_path)]) == 2


def test_a_baseline_without_finished_runs_takes_its_noise_floor_from_the_variant_compared_against(uri):
    """Every run of the baseline failed, so the report compares against `fast` (1.5x its speed).
    `sched` changes only the schedule of the failed baseline, so it was taken as an A/A arm of
    `fast`: its 0.67x set the noise floor to 1.5x, and `other`, 13% slower than `fast` on every seed,
    read 'same within the noise floor'. Neutral is now judged against the variant compared against."""
    from mlflow import MlflowClient

    log_study(uri, "fallback", {"base": {"acc": [0.8, 0.81, 0.82]},
                                "fast": {"acc": [0.8, 0.81, 0.82], "speed": [1500.0, 1510.0, 1490.0]},
                                "sched": {"acc": [0.8, 0.81, 0.82], "speed": [1000.0, 1005.0, 995.0]},
                                "other": {"acc": [0.8, 0.81, 0.82], "speed": [1300.0, 1305.0, 1295.0]}})  # fmt: skip
    client = MlflowClient(uri)
    for run in client.search_runs([client.get_experiment_by_name("fallback").experiment_id]):
        group, run_id = run.data.tags.get("bench.group"), run.info.run_id
        if group is None:  # the parent run
            continue
        if group == "base":
            client.set_tag(run_id, "bench.status", "failed")
        elif group == "sched":
            client.log_param(run_id, "train.scheduler.name", "step")
        else:
            client.log_param(run_id, "model.width", "2" if group == "fast" else "3")
    b = report_tables(experiment="fallback", tracking_uri=uri, baseline="base")["baseline"].set_index(
        "variant"
    )
    assert b.loc["fast", "speed_verdict"] == "baseline"
    assert b.loc["other", "train_img_s_hi"] < 0.9 and b.loc["other", "speed_verdict"] == "slower"
