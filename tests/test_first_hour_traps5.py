"""First-hour traps, round 5: store and folder faults around a run, SWA/EMA that average next to
nothing, the report's memory wording, two downloads into one data folder. Each test reproduces what
a new user ran and saw, and checks what they should have seen."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from bench.cli import main
from tests import procs
from tests.helpers import REPO, all_runs, bench_env, children, client_for, parents, reached, store_args
from tests.recipes import tiny_recipe, write_recipe

# --- a store failure on the parent run -------------------------------------------------------------


def test_a_store_failure_on_the_parent_run_exits_3_in_one_line(tmp_path, tiny_image_folder, capsys):
    """The artifact store failing as `bench run` saved the parent run's recipe.yaml gave exit 1 and
    a traceback (README: 3 is the store's code), and left the parent run RUNNING: the closing
    step that failed first (saving runs.csv) skipped closing it."""
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(tiny_image_folder, **{"train.epochs": 1}))
    (tmp_path / "mlartifacts").write_text("a file where the artifact folder goes\n")
    assert main(["run", str(path), *store_args(tmp_path)]) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    error = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error) == 1, err
    assert (
        f"the MLflow tracking store 'sqlite:///{tmp_path / 'mlflow.db'}' failed while writing the parent "
        in error[0]
    )
    assert "NotADirectoryError" in error[0] and "run the same command again once the store works" in error[0]
    (parent,) = parents(all_runs(tmp_path))
    assert parent.info.status == "FAILED"  # closed, not left RUNNING for the next command to close
    assert not children(all_runs(tmp_path))  # stopped before anything trained
    (tmp_path / "mlartifacts").unlink()  # the store works again: the same command runs the study
    assert main(["run", str(path), *store_args(tmp_path)]) == 0
    assert [r.data.tags["bench.status"] for r in children(all_runs(tmp_path))] == ["finished"]


# --- the results folder deleted while bench run runs ------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("store", ["in the results folder", "elsewhere"])
def test_a_results_folder_deleted_mid_run_stops_the_command_in_one_line(tmp_path, tiny_image_folder, store):
    """`rm -rf results` while `bench run` trained: every later variant failed one by one, each with
    MLflow's errors and a reason claiming 'the checkpoint is kept and the next run resumes it'
    (or, with the store elsewhere, trained on with its weights going into a folder made again).
    Now: stopped after the variant then running, one line naming the folder, exit 3; the runs of
    a store elsewhere are kept and the same command trains what is missing into them."""
    from bench.recipe.load import load_recipe

    recipe = tiny_recipe(tiny_image_folder, **{"train.epochs": 2, "train.device": "cpu", "seeds": [0, 1, 2]})
    path = write_recipe(tmp_path / "tiny.yaml", recipe)
    first = load_recipe(path).variants[0].variant_id
    results = tmp_path / "results"
    uri = ["--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"] if store == "elsewhere" else []
    command = [sys.executable, "-m", "bench.cli", "run", str(path), "--results-dir", str(results), *uri,
               "--order", "variant"]  # fmt: skip
    env = bench_env(tmp_path, f"run.epoch_end.1@{first}:block", MLFLOW_TRACKING_URI="")
    proc = procs.popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reached(tmp_path, proc)  # the first variant has trained one of its two epochs
    shutil.rmtree(results)
    (tmp_path / "release").touch()
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 3, err
    assert "Traceback" not in err, err
    error = [line for line in err.splitlines() if line.startswith("error:")]
    assert error == [
        f"error: the results folder {results} was deleted or moved while bench run ran (1 of 3 runs done): "
        "checkpoints, exported weights and runs.csv in it are gone; "
        + (f"the MLflow store {results / 'mlflow.db'} and the runs recorded in it went too"
           if store != "elsewhere" else f"the runs recorded in the MLflow store 'sqlite:///{tmp_path / 'mlflow.db'}' are kept")
        + "; stopped. Run the same command again: it trains what is missing"
    ], err  # fmt: skip
    assert "seed=1" not in err  # no later variant started
    if store == "elsewhere":
        (run,) = children(all_runs(tmp_path))  # the first variant's run stays in the store
        recorded = run.info.run_id
    env = bench_env(tmp_path, MLFLOW_TRACKING_URI="")
    rerun = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    if store == "elsewhere":  # the same runs, trained again where their weights went missing
        runs = children(all_runs(tmp_path))
        assert len(runs) == 3 and recorded in {r.info.run_id for r in runs}
        assert {r.data.tags["bench.status"] for r in runs} == {"finished"}
    else:
        client = client_for(results)
        exp = client.get_experiment_by_name("tiny")
        runs = children(client.search_runs([exp.experiment_id]))
        assert sorted(r.data.tags["bench.status"] for r in runs) == ["finished"] * 3
    assert all((results / "tiny" / "weights" / f"seed={s}.pt").is_file() for s in range(3))


# --- the report's memory wording -----------------------------------------------------------------


def test_the_report_says_memory_was_not_recorded_without_a_doubled_word(tmp_path):
    """Runs without peak memory (neither GPU memory nor memory/peak_rss_mb) gave the report
    "Memory: memory (not recorded), mean over seeds" and "Memory here is the memory (not recorded),
    not a device's memory": a mean of nothing, said twice."""
    from tests.helpers import fresh_store, log_study

    uri = fresh_store(tmp_path / "mlflow.db")
    none = {"memory/peak_rss_mb": float("nan")}  # how MLflow keeps a value that was never measured
    log_study(uri, "nomem", {"base": {"acc": [0.8, 0.81], "metrics": none},
                             "other": {"acc": [0.7, 0.72], "metrics": none}})  # fmt: skip
    assert (
        main(["report", "--experiment", "nomem", "--tracking-uri", uri, "--results-dir", str(tmp_path)]) == 0
    )
    md = (tmp_path / "nomem" / "report.md").read_text()
    assert "memory (not recorded)" not in md, md
    assert "Memory: not recorded (no run has peak GPU memory or `memory/peak_rss_mb`). Wall s" in md
    assert "Memory was not recorded, so it is on no front." in md
