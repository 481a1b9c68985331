"""Traps of a new user's first hour (issue "The first hour of a new user"): each one used to be
silently accepted, dropped, or to fail late with a traceback after runs were recorded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main
from bench.errors import RecipeError
from bench.recipe.load import load_recipe
from bench.validate import load_validated
from tests.recipes import tiny_recipe, write_recipe

REPO = Path(__file__).resolve().parent.parent


def bench(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def store_args(tmp_path: Path) -> list[str]:
    return [
        "--results-dir",
        str(tmp_path / "results"),
        "--tracking-uri",
        f"sqlite:///{tmp_path / 'mlflow.db'}",
    ]


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
