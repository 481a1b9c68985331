"""Traps of a new user's first hour (issue "The first hour of a new user"): each one used to be
silently accepted, dropped, or to fail late with a traceback after runs were recorded."""

from __future__ import annotations

import math
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main
from bench.errors import RecipeError
from bench.recipe.load import load_recipe
from bench.validate.recipe import load_validated
from tests.helpers import store_args
from tests.recipes import tiny_recipe, write_recipe

REPO = Path(__file__).resolve().parent.parent


def bench(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def assert_nothing_recorded(tmp_path: Path) -> None:
    results = tmp_path / "results"
    assert not results.exists() or not any(p.is_dir() for p in results.iterdir()), list(results.iterdir())
    assert not (tmp_path / "mlflow.db").exists()


# --- 1. an override of a key inside a matrix axis reaches every variant ---------------------------

SCHEDULER_AXIS = {
    "train.scheduler": [{"name": "cosine"}, {"name": "step", "step_size": 1}],
    "include": [{"train.optimizer": {"name": "adamw", "lr": 1e-3}}, {"train.precision": "amp_bf16"}],
}


def test_override_inside_an_axis_value_applies_to_every_variant(tmp_path):
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(tmp_path, matrix=SCHEDULER_AXIS))
    loaded = load_recipe(path, ["train.scheduler.warmup_epochs=1", "train.optimizer.lr=0.01"])
    assert len({v.group for v in loaded.variants}) == 4
    for v in loaded.variants:
        assert v.body.train.scheduler.warmup_epochs == 1, v.name
        assert v.body.train.optimizer.lr == 0.01, v.name  # the include entry's adamw too
    assert {v.body.train.scheduler.name for v in loaded.variants} == {"cosine", "step"}
    assert any("matrix axis train.scheduler" in n for n in loaded.notes)


def test_override_pinning_an_include_key_wins(tmp_path):
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(tmp_path, matrix=SCHEDULER_AXIS))
    loaded = load_recipe(path, ["train.precision=fp32"])
    assert {v.body.train.precision for v in loaded.variants} == {"fp32"}


def test_override_into_a_non_mapping_axis_value_is_refused_naming_the_axis(tmp_path):
    matrix = {"train.ema": [None, {"decay": 0.9}]}
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(tmp_path, matrix=matrix))
    with pytest.raises(RecipeError, match=r"matrix axis train\.ema has the value None"):
        load_recipe(path, ["train.ema.decay=0.5"])


def test_dry_run_shows_the_override_merged_into_the_axis(tmp_path):
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(tmp_path, matrix=SCHEDULER_AXIS))
    proc = bench("run", str(path), "train.scheduler.warmup_epochs=1", "--dry-run", *store_args(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "override train.scheduler.warmup_epochs=1 applied to every value of matrix axis train.scheduler" \
        in proc.stdout  # fmt: skip


def test_smoke_warmup_override_is_not_dropped():
    """The issue's own command: onecycle ramps up by itself, so the warm-up is refused, not ignored."""
    with pytest.raises(RecipeError, match="warmup_epochs is not supported with scheduler 'onecycle'"):
        load_validated(REPO / "recipes" / "smoke.yaml", ["train.scheduler.warmup_epochs=1"], full=False)


# --- 2. overrides anywhere on the line, for every command -----------------------------------------


def test_tune_accepts_overrides_after_options(tmp_path):
    proc = bench("tune", "recipes/smoke_tune.yaml", "--n-trials", "4", "train.epochs=1", "--dry-run",
                 *store_args(tmp_path), cwd=REPO)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "4 trials" in proc.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["tune", "train.epochs=1", "recipes/smoke_tune.yaml", "--dry-run"],
        ["tune", "--dry-run", "recipes/smoke_tune.yaml", "--n-trials", "3", "data.subset=500"],
        ["run", "--dry-run", "recipes/smoke.yaml", "--order", "random", "train.epochs=2"],
        ["run", "train.epochs=2", "--dry-run", "recipes/smoke.yaml"],
    ],
)
def test_overrides_before_between_and_after(tmp_path, argv, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    assert main([*argv, *store_args(tmp_path)]) == 0, capsys.readouterr().err


def test_sorted_positionals_for_single_recipe_commands():
    import argparse

    from bench.commands import common, plan, report

    for module, line in ((plan, ["--strict", "a.yaml", "x.y=1"]), (report, ["x.y=1", "--no-log", "a.yaml"])):
        parser = argparse.ArgumentParser()
        module.configure(parser)
        args = parser.parse_intermixed_args(line)
        common.sort_positionals(args, parser)
        assert (args.recipe, args.overrides) == ("a.yaml", ["x.y=1"])


# --- 15c. an override without '=' -----------------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "tune", "plan"])
def test_override_without_a_value_is_named_as_such(tmp_path, command, capsys):
    recipe = "recipes/smoke_tune.yaml" if command == "tune" else "recipes/smoke.yaml"
    extra = ["--dry-run"] if command != "plan" else []
    assert main([command, str(REPO / recipe), "train.epochs", *extra, *store_args(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "train.epochs" in err and "override without a value" in err and "train.epochs=VALUE" in err
    assert_nothing_recorded(tmp_path)


# --- 14. a study name is a single safe folder name ------------------------------------------------


@pytest.mark.parametrize("study", ["..", "a/b", "../escape", ".hidden"])
@pytest.mark.parametrize("command", ["tune", "ui"])
def test_unsafe_study_name_is_refused(tmp_path, study, command, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["tune", str(REPO / "recipes" / "smoke_tune.yaml"), "--study", study, "--dry-run"]
    if command == "ui":
        argv = ["ui", "--tune", str(REPO / "recipes" / "smoke_tune.yaml"), "--study", study, "--no-browser"]
    assert main([*argv, *store_args(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--study" in err and "a study name must start with a letter or digit" in err, err
    assert_nothing_recorded(tmp_path)
    assert not (tmp_path / "a").exists() and not (tmp_path / "escape").exists()


# --- 15a. a baseline that names no variant --------------------------------------------------------


def test_baseline_naming_no_variant_is_refused_listing_the_variants(tmp_path, capsys):
    recipe = tiny_recipe(tmp_path, matrix={"train.freeze": [0, 1]})
    recipe["baseline"] = "freeze=O"  # the letter O
    path = write_recipe(tmp_path / "r.yaml", recipe)
    assert main(["run", str(path), *store_args(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "baseline" in err and "'freeze=O'" in err
    assert "freeze=0, freeze=1" in err
    assert_nothing_recorded(tmp_path)


def test_baseline_of_the_file_stands_when_an_override_pins_its_axis(tmp_path):
    recipe = tiny_recipe(tmp_path, matrix={"train.freeze": [0, 1], "train.precision": ["fp32", "amp_bf16"]})
    recipe["baseline"] = "freeze=0,precision=fp32"
    path = write_recipe(tmp_path / "r.yaml", recipe)
    assert len(load_recipe(path, ["train.freeze=1"]).variants) == 2
    with pytest.raises(RecipeError, match="not one of the recipe's variants"):
        load_recipe(path, ["baseline=freeze=1"])


# --- 15b. an empty class folder -------------------------------------------------------------------


def test_empty_class_folder_is_refused_naming_it(tmp_path, tiny_image_folder, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_image_folder, data)
    (data / "train" / ".ipynb_checkpoints").mkdir()
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(data))
    assert main(["run", str(path), *store_args(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(data / "train" / ".ipynb_checkpoints") in err and "holds no images" in err, err
    assert "Traceback" not in err
    assert_nothing_recorded(tmp_path)


# --- 8. a recipe whose every run would be skipped here for lack of a device ------------------------


@pytest.fixture
def no_cuda(monkeypatch):
    """This machine as one without CUDA, whatever it has (the check runs before any training)."""
    monkeypatch.setenv("BENCH_FORCE_NO_CUDA", "1")


def test_gpu_recipe_dry_run_says_it_would_be_refused(tmp_path, no_cuda):
    proc = bench("run", "recipes/cifar10_speedrun.yaml", "--dry-run", *store_args(tmp_path), cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "bench run will refuse this recipe (exit 2)" in proc.stdout
    assert "amp_fp16 needs a CUDA device" in proc.stdout and "all 20 run(s)" in proc.stdout
    assert "--record-skips" in proc.stdout


def test_dry_run_estimate_counts_runs_this_machine_skips_at_no_time(tmp_path, no_cuda, capsys, monkeypatch):
    """smoke.yaml again after the quickstart: its 2 amp_fp16 runs are recorded as skipped at once
    without CUDA, but the estimate counted them at the median run's time ('~1m 27s for 2 run(s)')."""
    import pandas as pd

    # native bf16, as on the CI box: without it the amp_bf16 runs are skipped at once too
    monkeypatch.setenv("BENCH_FORCE_EMULATED_BF16", "0")

    path = REPO / "recipes" / "smoke.yaml"
    names = [v.name for v in load_recipe(path).variants if v.body.train.precision != "amp_fp16"]
    csv = tmp_path / "results" / "smoke" / "runs.csv"
    csv.parent.mkdir(parents=True)
    # timed before with other settings (another run key): each counts at its own 10 s
    pd.DataFrame({"variant": names, "run_key": "old", "status": "finished", "time/wall_s": 10.0}).to_csv(csv)
    assert main(["run", str(path), "--dry-run", *store_args(tmp_path)]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith(f"estimated training time: ~2m 40s for {len(names)} run(s)"), line
    assert "2 recorded as skipped on this machine at once" in line


def test_gpu_recipe_run_exits_2_before_recording(tmp_path, no_cuda, capsys):
    path = REPO / "recipes" / "cifar10_speedrun.yaml"
    assert main(["run", str(path), *store_args(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(path) in err and "train.precision: amp_fp16" in err, err
    assert "--record-skips" in err
    assert_nothing_recorded(tmp_path)


def test_partly_skipped_recipe_notes_the_skips_and_still_runs(tmp_path, no_cuda, capsys):
    path = REPO / "recipes" / "smoke.yaml"
    assert main(["run", str(path), "--dry-run", *store_args(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2 run(s) would be recorded as skipped: train.precision: amp_fp16" in out
    assert "will refuse" not in out


@pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="records a real skip: needs a machine without CUDA"
)
def test_record_skips_records_them(tmp_path, tiny_image_folder, capsys):
    path = write_recipe(
        tmp_path / "r.yaml", tiny_recipe(tiny_image_folder, **{"train.device": "cuda", "train.epochs": 1})
    )
    assert main(["run", str(path), "--record-skips", *store_args(tmp_path)]) == 0
    runs = (tmp_path / "results" / "tiny" / "runs.csv").read_text()
    assert "skipped" in runs and "needs a CUDA GPU" in runs


# --- 12. bad weights files and a CUDA device: exit 2 before anything is recorded ------------------


def weights_recipe(tmp_path: Path, data: Path, weights: Path) -> Path:
    return write_recipe(tmp_path / "r.yaml", tiny_recipe(data, **{"model.weights": str(weights)}))


def expect_exit_2(tmp_path: Path, path: Path, fragments: list[str], capsys) -> None:
    assert main(["run", str(path), *store_args(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert str(path) in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert_nothing_recorded(tmp_path)


def test_empty_weights_file(tmp_path, tiny_image_folder, capsys):
    weights = tmp_path / "empty.pt"
    weights.write_bytes(b"")
    path = weights_recipe(tmp_path, tiny_image_folder, weights)
    expect_exit_2(tmp_path, path, ["model.weights", str(weights), "empty (0 bytes)"], capsys)


def test_corrupt_weights_sidecar(tmp_path, tiny_image_folder, capsys):
    import torch

    from bench.components.models import build_model
    from bench.recipe.schema import ModelConfig

    weights = tmp_path / "good.pt"
    torch.save(build_model(ModelConfig(name="test_resnet"), 4).state_dict(), weights)
    (tmp_path / "good.pt.json").write_text("{not json")
    path = weights_recipe(tmp_path, tiny_image_folder, weights)
    expect_exit_2(tmp_path, path, ["model.weights", "good.pt.json"], capsys)


def test_cuda_device_without_cuda(tmp_path, tiny_image_folder, no_cuda, capsys):
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(tiny_image_folder, **{"train.device": "cuda"}))
    expect_exit_2(tmp_path, path, ["train.device: cuda needs a CUDA GPU"], capsys)


# --- 15d. a full disk -----------------------------------------------------------------------------

needs_dev_full = pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")


@needs_dev_full
@pytest.mark.parametrize("how", ["torch.save to a path", "torch.save to a file", "plain write"])
def test_full_disk_says_so_naming_the_folder(tmp_path, how):
    """/dev/full fails every write with ENOSPC: torch.save(obj, path) turns that into
    ``[enforce fail at inline_container.cc:672] unexpected pos``, a file object into OSError 28."""
    import torch

    from bench import errors
    from bench.util.fileio import atomic_write

    blob = {"w": torch.zeros(1 << 18)}

    def write(fh) -> None:
        if how == "torch.save to a path":
            torch.save(blob, "/dev/full")
        else:
            with open("/dev/full", "wb") as full:
                torch.save(blob, full) if how == "torch.save to a file" else full.write(b"x" * (1 << 20))

    target = tmp_path / "results" / "smoke" / "model.pt"
    with pytest.raises(errors.BenchError) as caught:
        atomic_write(target, write)
    text = str(caught.value)
    assert type(caught.value).__name__ == "DiskFullError" and "unexpected pos" not in text
    assert f"no space left on the device holding {target.parent}" in text
    assert not target.exists() and not list(target.parent.glob("*.tmp"))


# --- 16. a report when no run logged training throughput -------------------------------------------


def test_report_without_training_throughput(tmp_path, tiny_image_folder, capsys):
    """Every step inside the timing warm-up (few images, a long warm-up): no run logs
    throughput/train_img_s; the report still builds (it once raised KeyError 'train_img_s_delta')."""
    recipe = tiny_recipe(
        tiny_image_folder, **{"train.epochs": 1, "train.warmup_steps": 50, "data.subset": 64}
    )
    recipe["matrix"] = {"train.freeze": [0, 1]}
    path = write_recipe(tmp_path / "r.yaml", recipe)
    assert main(["run", str(path), *store_args(tmp_path)]) == 0
    runs = (tmp_path / "results" / "tiny" / "runs.csv").read_text()
    assert "throughput/train_img_s" not in runs.splitlines()[0]
    capsys.readouterr()
    assert main(["report", str(path), *store_args(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "Traceback" not in out
    assert (tmp_path / "results" / "tiny" / "report.md").is_file()


# --- a --results-dir that is a file --------------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "report", "tune"])
def test_results_dir_that_is_a_file_is_bad_input_naming_the_option(tmp_path, command, capsys):
    """`bench run recipes/smoke_pretrain.yaml --results-dir /etc/passwd` exited 1 with "cannot lock
    /etc/passwd/.smoke_pretrain.lock ...: [Errno 17] File exists"; `bench report` blamed the store."""
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder\n")
    recipe = "recipes/smoke_tune.yaml" if command == "tune" else "recipes/smoke_until_decided.yaml"
    args = [command, str(REPO / recipe), "--results-dir", str(a_file / "sub")]
    assert main([*args, "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]) == 2
    err = capsys.readouterr().err
    assert f"--results-dir {a_file / 'sub'}: {a_file} is a file, not a folder" in err, err
    assert err.count("\n") == 1 and not (tmp_path / "mlflow.db").exists()


def test_report_of_a_recipe_never_run_names_the_store_it_looked_in(tmp_path, capsys):
    """`bench report recipes/smoke_until_decided.yaml --results-dir /tmp/none` said "no MLflow
    experiment named ... in this tracking store": which store, after a run with another --results-dir?"""
    assert main(["report", str(REPO / "recipes/smoke_until_decided.yaml"), *store_args(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"tracking store at {tmp_path / 'mlflow.db'}" in err and "--results-dir" in err, err


def test_report_on_a_results_dir_without_a_store_creates_nothing(tmp_path, capsys):
    """A mistyped --results-dir: the report says no store is there, and leaves no folder and no
    empty MLflow store behind (it created both, then said the experiment was missing)."""
    missing = tmp_path / "typo"
    assert (
        main(["report", str(REPO / "recipes/smoke_until_decided.yaml"), "--results-dir", str(missing)]) == 1
    )
    assert f"no MLflow tracking store at {missing / 'mlflow.db'}" in capsys.readouterr().err
    assert not missing.exists()


def test_the_readmes_override_example_is_a_valid_command(tmp_path, capsys):
    """The README's override example, `bench run recipes/smoke.yaml train.epochs=1 data.subset=500
    ...`, exited 2: smoke's SWA variant starts averaging at epoch 1. The example now runs, and the
    error says what to set."""
    import re
    import shlex

    readme = (REPO / "README.md").read_text()
    example = re.search(r"Overrides use dotted keys and YAML types: `(bench run [^`]+)`", readme).group(1)
    args = [str(REPO / a) if a.endswith(".yaml") else a for a in shlex.split(example)[1:]]
    assert main([*args, "--dry-run", *store_args(tmp_path)]) == 0, capsys.readouterr().err
    smoke = str(REPO / "recipes/smoke.yaml")
    assert main(["run", smoke, "train.epochs=1", "--dry-run", *store_args(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "swa.start_epoch (1) must be < epochs (1)" in err and "set train.epochs to at least 2" in err, err


def test_report_while_the_run_is_still_going_says_so(tmp_path, tiny_image_folder, capsys):
    """`bench report` beside a running `bench run` (3 of 6 runs done) wrote "None: every run
    finished." and a summary that read as the whole study. It now says the command has not ended."""
    from tests.helpers import kill_group, reached, start_bench

    recipe = write_recipe(
        tmp_path / "tiny.yaml", tiny_recipe(tiny_image_folder, matrix={"train.optimizer.lr": [0.1, 0.05]})
    )
    second = load_recipe(recipe).variants[1].variant_id
    proc = start_bench(tmp_path, recipe, fault=f"run.train_start@{second}:block")
    try:
        reached(tmp_path, proc)
        assert main(["report", str(recipe), "--no-log", *store_args(tmp_path)]) == 0
        out = capsys.readouterr().out
        assert "warning: the latest bench run of this recipe (pid " in out, out
        assert "covers the 1 finished run(s) recorded so far of the 2 it runs" in out, out
    finally:
        kill_group(proc)
    assert "has not ended" in (tmp_path / "results" / "tiny" / "report.md").read_text()


def test_report_baseline_naming_no_variant_is_refused_listing_them(tmp_path, tiny_image_folder, capsys):
    """`bench report recipes/smoke.yaml --baseline freeze=3` (a label, not a variant) warned "has no
    finished runs" and compared against another baseline, exit 0."""
    recipe = write_recipe(
        tmp_path / "tiny.yaml", tiny_recipe(tiny_image_folder, matrix={"train.optimizer.lr": [0.1, 0.05]})
    )
    assert main(["run", str(recipe), "train.epochs=1", *store_args(tmp_path)]) == 0
    capsys.readouterr()
    args = ["report", str(recipe), "train.epochs=1", "--no-log", *store_args(tmp_path)]
    assert main([*args, "--baseline", "lr=0.5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"error: {recipe}: --baseline lr=0.5: no such variant; variants: lr=0.1, lr=0.05"
    ), err
    assert main([*args, "--baseline", "lr=0.05"]) == 0


def test_dry_run_says_when_the_start_weights_are_not_there(tmp_path, tiny_image_folder, capsys):
    """`bench run recipes/smoke.yaml --dry-run` before smoke_pretrain had run passed without a word;
    the real command then exited 2 on the missing weights. The quickstart pair stays quiet."""
    pre = write_recipe(tmp_path / "pre.yaml", tiny_recipe(tiny_image_folder, name="pre"))
    weights = "${BENCH_RESULTS_DIR}/pre/weights/seed=0.pt"
    tuned = write_recipe(
        tmp_path / "tuned.yaml", tiny_recipe(tiny_image_folder, name="tuned", **{"model.weights": weights})
    )
    assert main(["run", str(tuned), "--dry-run", *store_args(tmp_path)]) == 0
    out = capsys.readouterr().out
    missing = tmp_path / "results" / "pre" / "weights" / "seed=0.pt"
    assert f"note: model.weights: {missing} does not exist yet: bench run stops at it (exit 2" in out, out
    assert main(["run", str(pre), str(tuned), "--dry-run", *store_args(tmp_path)]) == 0
    assert "does not exist" not in capsys.readouterr().out  # the quickstart pair: pre writes it first


def test_a_store_failure_says_resume_only_where_the_checkpoint_is_there(tmp_path):
    """The results folder deleted mid-run: every later variant failed with 'the checkpoint is kept
    and the next run resumes it', with the checkpoint gone with the folder."""
    from bench.execution.task import TaskSpec, store_failure

    variant = load_recipe(write_recipe(tmp_path / "tiny.yaml", tiny_recipe(tmp_path))).variants[0]
    spec = TaskSpec("tiny", str(tmp_path / "results"), "sqlite:///gone.db", "1", "p")
    exc = RuntimeError("attempt to write a readonly database")
    reason = store_failure(variant, "recording the run", exc, spec)["reason"]
    assert "no checkpoint in" in reason and "trains it from the start" in reason and "resumes" not in reason
    (spec.run_dir(variant)).mkdir(parents=True)
    (spec.run_dir(variant) / "last.ckpt").write_bytes(b"ckpt")
    assert (
        "the checkpoint is kept and the next run resumes it"
        in store_failure(variant, "x", exc, spec)["reason"]
    )


# --- the experiment's "Run again" command is the command that ran ----------------------------------


def test_the_run_again_command_repeats_overrides_folders_and_data_dir(
    tmp_path, tiny_image_folder, monkeypatch
):
    """MLflow's experiment note said ``bench run RECIPE``: without the overrides it runs another
    config (a second study beside the first), without --results-dir it looks in ./results, and
    without BENCH_DATA_DIR it cannot find a relative data root."""
    from tests.helpers import children, client_for, fresh_store, parents

    monkeypatch.setenv("BENCH_DATA_DIR", str(tiny_image_folder))
    recipe = tiny_recipe(tiny_image_folder)
    del recipe["data"]["root"]  # the data folder comes from the environment
    path = write_recipe(tmp_path / "r.yaml", recipe)
    fresh_store(tmp_path / "mlflow.db")
    flags = ["--order", "random", "--order-seed", "7"]
    assert main(["run", str(path), "train.epochs=1", "data.subset=40", *store_args(tmp_path), *flags]) == 0
    client = client_for(tmp_path)
    exp = client.get_experiment_by_name("tiny")
    (parent,) = parents(client.search_runs([exp.experiment_id]))
    command = parent.data.tags["bench.command"]
    assert command in exp.tags["mlflow.note.content"]  # the note shows the same line
    env, bench_word, *argv = shlex.split(command)
    assert env == f"BENCH_DATA_DIR={tiny_image_folder}" and bench_word == "bench"
    assert argv == ["run", str(path), "train.epochs=1", "data.subset=40", *store_args(tmp_path), *flags]
    assert main(argv) == 0
    runs = client.search_runs([exp.experiment_id])
    assert len(parents(runs)) == 2 and len(children(runs)) == 1  # the same study: nothing trained again


def test_the_recorded_command_hides_passwords(tmp_path):
    """The command is a tag anyone who reads the store sees: a database password stays out."""
    from bench.tracking.experiment_view import rerun_command

    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(tmp_path))
    loaded = load_recipe(path, ["tracking.uri=postgresql://bob:hunter2@db/mlflow"])
    command = rerun_command(loaded, "results", "postgresql://ann:swordfish@db/mlflow")
    assert "hunter2" not in command and "swordfish" not in command
    assert "--tracking-uri postgresql://ann:***@db/mlflow" in command


def test_a_run_too_short_to_time_has_no_throughput_rather_than_zero():
    """Warm-up that ended on an epoch's last step left the clock running with no image counted: a
    tiny subset printed and recorded "0 img/s", which the report's medians then averaged in."""
    import torch

    from bench.engine.measure import Throughput

    meter = Throughput(torch.device("cpu"), warmup_steps=2)
    meter.start()
    meter.step(32)
    meter.step(32)  # the warm-up's last step starts the clock
    meter.stop()  # the epoch ends: evaluation
    assert meter.seconds > 0 and math.isnan(meter.images_per_second)
