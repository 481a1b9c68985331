"""The Python API (``import bench``): light to import, the CLI's validation and recording, results
as DataFrames; the time estimates (progress line, ``bench run --dry-run``)."""

from __future__ import annotations

import io
import subprocess
import sys
import time

import pandas as pd
import pytest

import bench
from bench.errors import RecipeError
from bench.execution.progress import Progress
from tests.helpers import fresh_store
from tests.recipes import tiny_recipe, write_recipe


def test_import_bench_is_light_and_names_the_api():
    code = (
        "import sys, bench\n"
        "names = [bench.load_recipe.__name__, bench.run.__name__, bench.tune_recipe.__name__, bench.report_recipe.__name__]\n"
        "print(names, sorted(m for m in ('torch', 'mlflow', 'optuna', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['load_recipe', 'run', 'tune_recipe', 'report_recipe'] []"


def test_bench_report_and_tune_are_the_packages_and_the_functions_have_names_of_their_own():
    import bench.report
    import bench.tune.study
    from bench.report import build

    assert bench.report.build is build and bench.tune.study.run_study is not None
    assert bench.report_recipe.__module__ == bench.tune_recipe.__module__ == "bench.commands.api"
    assert type(bench) is type(bench.report)  # a plain module: no class swapped in to hide the packages
    code = "import bench\nfor name in ('report', 'tune'):\n    try:\n        getattr(bench, name)\n    except AttributeError as exc:\n        print(exc)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert (
        "bench.report_recipe" in out and "bench.tune_recipe" in out
    )  # code using the old names is told the new


def test_load_recipe_validates_like_the_cli(tmp_path):
    path = write_recipe(tmp_path / "bad.yaml", tiny_recipe(tmp_path, **{"train.scheduler.name": "cosin"}))
    with pytest.raises(RecipeError) as info:
        bench.load_recipe(path)
    assert info.value.exit_code == 2 and "train.scheduler" in str(info.value)
    loaded = bench.load_recipe(write_recipe(tmp_path / "ok.yaml", tiny_recipe(tmp_path)), ["train.epochs=1"])
    assert loaded.variants[0].body.train.epochs == 1


def test_progress_line_shows_the_time_left_from_trained_variants():
    out = io.StringIO()
    progress = Progress(3, stream=out, live=False)
    progress.variant_start("a")
    progress.variant_end("already finished, skipped")  # took no time: says nothing about the rest
    progress.variant_start("b")
    time.sleep(0.2)
    progress.variant_end("finished", "test/acc 0.5")
    progress.variant_start("c")
    lines = out.getvalue().splitlines()
    assert lines[0] == "[0/3 done, 3 left] a" and "left]" not in lines[1]
    assert lines[3].startswith("[2/3 done, ~0s left] b: finished")
    assert lines[4] == "[2/3 done, 1 left, ~0s left] c"


@pytest.mark.slow
def test_run_report_and_dry_run_estimate_through_the_api(tmp_path, tiny_image_folder, capsys):
    recipe = tiny_recipe(tiny_image_folder, name="apitest", matrix={"train.freeze": [0, 2]})
    recipe["train"]["epochs"] = 1
    path = write_recipe(tmp_path / "apitest.yaml", recipe)
    results = tmp_path / "results"
    uri = fresh_store(tmp_path / "mlflow.db")

    runs = bench.run(path, results_dir=results, tracking_uri=uri, live_progress=False)
    assert isinstance(runs, pd.DataFrame) and list(runs["status"]) == ["finished", "finished"]
    assert runs["test/acc"].notna().all() and set(runs["recipe"]) == {"apitest"}
    on_disk = pd.read_csv(results / "apitest" / "runs.csv")
    assert list(on_disk["mlflow_run_id"]) == list(runs["mlflow_run_id"])  # recorded as the CLI records
    err = capsys.readouterr().err
    assert "[1/2 done, 1 left, ~" in err  # the second variant starts with the time left

    tables = bench.report_recipe(path, results_dir=results, tracking_uri=uri)
    assert {"variants", "baseline", "runs"} <= set(tables)
    assert sorted(tables["variants"]["variant"]) == ["freeze=0", "freeze=2"]
    assert (results / "apitest" / "report.md").is_file()

    def dry_run(*extra: str) -> str:
        code = (
            "import sys; from bench.cli import main\n"
            f"main(['run', {str(path)!r}, *{list(extra)!r}, '--dry-run', '--results-dir', {str(results)!r}])\n"
            "print('heavy:', sorted(m for m in ('mlflow', 'optuna') if m in sys.modules))"
        )
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout

    out = dry_run()
    assert "nothing to train: all 2 run(s) finished" in out and "heavy: []" in out
    walls = on_disk["time/wall_s"]
    out = dry_run("train.epochs=2")
    from bench.execution.estimate import format_duration

    assert f"~{format_duration(walls.sum())} for 2 run(s)" in out and "timed with other settings" in out


@pytest.mark.slow
def test_tune_through_the_api_returns_the_trials(tmp_path, tiny_image_folder):
    recipe = tiny_recipe(tiny_image_folder, name="apitune")
    recipe["train"]["epochs"] = 1
    recipe["tune"] = {
        "n_trials": 2,
        "space": {"train.optimizer.lr": {"float": [1e-3, 0.1], "log": True}},
        "recheck_top": 0,
    }  # re-checks: test_tune_noise
    path = write_recipe(tmp_path / "apitune.yaml", recipe)
    trials = bench.tune_recipe(path, results_dir=tmp_path / "results", n_trials=1,
                        tracking_uri=fresh_store(tmp_path / 'mlflow.db'))  # fmt: skip
    assert isinstance(trials, pd.DataFrame) and len(trials) == 1
    assert (tmp_path / "results" / "apitune" / "best.yaml").is_file()
