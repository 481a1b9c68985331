"""Bad input, tried on purpose. Every case fails through the CLI with exit code 2 and a message
on stderr naming the file and the key (no traceback), before anything is written: no
results/<recipe>/ folder, no MLflow store or run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.cli import main
from bench.errors import BenchError, RecipeError
from bench.recipe.yaml_loader import MAX_ALIASES, MAX_DOCUMENT_BYTES
from bench.validate.recipe import load_validated
from tests.recipes import tiny_recipe, write_recipe

REPO = Path(__file__).resolve().parent.parent

GOOD = """name: tiny
data: {name: imagefolder, root: /nonexistent, batch_size: 32}
model: {name: test_resnet}
train:
  epochs: 1
  optimizer: {name: sgd, lr: 1e-3}
"""

ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi")
)

CASES = {
    "malformed": ("name: tiny\ntrain: {epochs: 1\n", ["line"]),
    "tab_indent": ("name: tiny\ntrain:\n\tepochs: 1\n", ["line"]),
    "unknown_key": (
        GOOD.replace("epochs: 1", "epochs: 1\n  epoch: 2"),
        ["train.epoch", "unknown key", "allowed keys"],
    ),
    "unknown_top_key": (GOOD + "trian: {}\n", ["trian", "unknown key"]),
    "wrong_type": (GOOD.replace("epochs: 1", "epochs: three"), ["train.epochs", "integer"]),
    "negative": (GOOD.replace("epochs: 1", "epochs: -1"), ["train.epochs", "greater than 0"]),
    "duplicate_key": (
        GOOD.replace("epochs: 1", "epochs: 1\n  epochs: 2"),
        ["duplicate key 'epochs'", "line"],
    ),
    "keys_equal_once_loaded": (
        GOOD.replace("{name: test_resnet}", "{name: test_resnet, kwargs: {1: a, true: b}}"),
        ["keys '1'", "and 'true' are different in YAML", "quote them"],
    ),
    "python_tag": ("name: !!python/object/apply:os.system ['echo pwned']\n", ["Python tags are not allowed"]),
    "python_name": ("name: tiny\nmodel: !!python/name:os.system\n", ["Python tags are not allowed"]),
    "lambda_lr": (GOOD.replace("lr: 1e-3", 'lr: "lambda x: x"'), ["train.optimizer.lr", "number"]),
    "unknown_model": (GOOD.replace("test_resnet", "resnet_typo_999"), ["model.name", "unknown model"]),
    "unknown_optimizer_arg": (GOOD.replace("lr: 1e-3", "lr: 1e-3, momentun: 0.9"), ["momentun"]),
    # a value torch refuses only when it builds the optimizer: every run failed with an IndexError
    "bad_optimizer_value": (
        GOOD.replace("name: sgd, lr: 1e-3", "name: adamw, lr: 1e-3, betas: [0.9]"),
        ["train.optimizer", "optimizer 'adamw' refuses betas=[0.9]"],
    ),
    "bad_scheduler_value": (
        GOOD.replace("lr: 1e-3}", "lr: 1e-3}\n  scheduler: {name: multistep, milestones: 3}"),
        ["train.scheduler", "scheduler 'multistep' refuses milestones=3"],
    ),
    "bad_optimizer_momentum": (
        GOOD.replace("lr: 1e-3", "lr: 1e-3, momentum: -1"),
        ["train.optimizer", "momentum=-1", "Invalid momentum value"],
    ),
    "list_recipe": ("- name: tiny\n- train: {}\n", ["must be a mapping", "list"]),
    "scalar_recipe": ("just a string\n", ["must be a mapping", "str"]),
    "empty_recipe": ("", ["must be a mapping"]),
    "too_large": ("name: tiny\ndescription: '" + "x" * (MAX_DOCUMENT_BYTES + 10) + "'\n", ["larger than"]),
    "alias_bomb": (ALIAS_BOMB, ["through its aliases", "alias bomb"]),
    "many_aliases": (
        "a: &a 1\nb: [" + ", ".join(["*a"] * (MAX_ALIASES + 1)) + "]\n",
        [f"more than {MAX_ALIASES} aliases"],
    ),
    "recursive_alias": ("name: tiny\nmodel:\n  kwargs: &k {a: [*k]}\n", ["recursive alias"]),
    "deep_nesting": ("name: " + "[" * 5000 + "]" * 5000 + "\n", ["nested too deeply"]),
    "bad_matrix_axis": (GOOD + "matrix: {train.epochz: [1, 2]}\n", ["epochz"]),
    "bad_name": (GOOD.replace("name: tiny", "name: ../../etc"), ["name"]),
}


def run_cli(tmp_path: Path, recipe: Path, *extra: str) -> int:
    return main(["run", str(recipe), "--results-dir", str(tmp_path / "results"),
                 "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", *extra])  # fmt: skip


def assert_nothing_written(tmp_path: Path) -> None:
    results = tmp_path / "results"
    assert not results.exists() or not any(p.is_dir() for p in results.iterdir()), list(results.iterdir())
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_recipe_fails_cleanly(tmp_path, case, capsys):
    text, expected = CASES[case]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    assert run_cli(tmp_path, recipe) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert str(recipe) in err
    for fragment in expected:
        assert fragment in err, (fragment, err)
    assert_nothing_written(tmp_path)
    with pytest.raises(RecipeError):
        load_validated(recipe)


def test_bad_override_names_the_key(tmp_path, tiny_image_folder, capsys):
    recipe = write_recipe(tmp_path / "tiny.yaml", tiny_recipe(tiny_image_folder))
    argv = ["run", str(recipe), "train.optimizer.lr=lambda x: x", "--results-dir", str(tmp_path / "results")]
    assert main([*argv, "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]) == 2
    err = capsys.readouterr().err
    assert "train.optimizer.lr" in err and "Traceback" not in err
    assert_nothing_written(tmp_path)


def test_cli_subprocess_prints_no_traceback(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(CASES["python_tag"][0])
    out = subprocess.run([sys.executable, "-m", "bench.cli", "run", str(recipe), "--results-dir",
                          str(tmp_path / "results")], cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 2
    assert "Python tags are not allowed" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "results").exists()


# --- data and weights: checked before anything is recorded -----------------------------------------


def copy_folder(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def expect_run_error(tmp_path: Path, recipe: Path, fragments: list[str], capsys) -> None:
    assert run_cli(tmp_path, recipe) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err, err
    assert str(recipe) in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert_nothing_written(tmp_path)


def test_missing_data_dir(tmp_path, capsys):
    recipe = write_recipe(tmp_path / "tiny.yaml", tiny_recipe(tmp_path / "no-such-data"))
    expect_run_error(tmp_path, recipe, ["data", str(tmp_path / "no-such-data"), "data.root"], capsys)


def test_truncated_image(tmp_path, tiny_image_folder, capsys):
    data = copy_folder(tiny_image_folder, tmp_path / "data")
    victim = data / "train" / "red" / "0003.jpg"
    victim.write_bytes(victim.read_bytes()[:60])
    recipe = write_recipe(tmp_path / "tiny.yaml", tiny_recipe(data))
    expect_run_error(tmp_path, recipe, [str(victim), "unreadable or truncated"], capsys)


def test_not_an_image(tmp_path, tiny_image_folder, capsys):
    data = copy_folder(tiny_image_folder, tmp_path / "data")
    victim = data / "test" / "blue" / "0001.jpg"
    victim.write_text("this is not a JPEG")
    recipe = write_recipe(tmp_path / "tiny.yaml", tiny_recipe(data))
    expect_run_error(tmp_path, recipe, [str(victim)], capsys)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_image(tmp_path, tiny_image_folder, capsys):
    data = copy_folder(tiny_image_folder, tmp_path / "data")
    victim = data / "train" / "gray" / "0000.jpg"
    victim.chmod(0)
    recipe = write_recipe(tmp_path / "tiny.yaml", tiny_recipe(data))
    expect_run_error(tmp_path, recipe, [str(victim), "cannot read"], capsys)


def test_weights_for_another_architecture(tmp_path, tiny_image_folder, capsys):
    import timm

    path = tmp_path / "resnet10t.pt"
    torch.save(timm.create_model("resnet10t", num_classes=4).state_dict(), path)
    recipe = write_recipe(
        tmp_path / "tiny.yaml", tiny_recipe(tiny_image_folder, **{"model.weights": str(path)})
    )
    expect_run_error(tmp_path, recipe, ["model.weights", str(path), "another architecture"], capsys)


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_weights_with_pickled_code(tmp_path, tiny_image_folder, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"conv.weight": Evil()}, path)
    recipe = write_recipe(
        tmp_path / "tiny.yaml", tiny_recipe(tiny_image_folder, **{"model.weights": str(path)})
    )
    expect_run_error(tmp_path, recipe, ["model.weights", str(path), "pickled code"], capsys)


def test_missing_weights_file(tmp_path, tiny_image_folder, capsys):
    path = tmp_path / "nope.pt"
    recipe = write_recipe(
        tmp_path / "tiny.yaml", tiny_recipe(tiny_image_folder, **{"model.weights": str(path)})
    )
    expect_run_error(tmp_path, recipe, ["model.weights", "file not found"], capsys)


def test_every_error_is_a_bench_error():
    assert issubclass(RecipeError, BenchError) and RecipeError.exit_code == 2
