"""Names that become folders or files cannot escape: recipe, study and experiment names are
checked whole (``fullmatch``), and variant names map to safe file names."""

from __future__ import annotations

import pytest

from bench.cli import main
from bench.errors import RecipeError
from bench.recipe.load import load_recipe
from bench.recipe.matrix import safe_filename
from tests.recipes import tiny_recipe, write_recipe


@pytest.mark.parametrize(
    "name", ["../../X", "/tmp/abs", "a/b", "..", "a\nb", "x\n", "tab\there", "back\\slash", ""]
)
def test_unsafe_experiment_exits_2_and_records_nothing(tmp_path, tiny_image_folder, capsys, name):
    recipe = write_recipe(
        tmp_path / "r.yaml", tiny_recipe(tiny_image_folder, **{"tracking.experiment": name})
    )
    argv = ["run", str(recipe), "--results-dir", str(tmp_path / "results"),
            "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "tracking.experiment" in err and "'/'" in err and "control characters" in err
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "results").exists()


def test_ordinary_experiment_names_pass(tmp_path, tiny_image_folder):
    for name in ("my experiment", "cifar10 (ablation, v2)", "exp-1.2_b"):
        recipe = tiny_recipe(tiny_image_folder, **{"tracking.experiment": name})
        assert load_recipe(write_recipe(tmp_path / "r.yaml", recipe)).recipe.tracking.experiment == name


@pytest.mark.parametrize(("key", "value"), [("name", "tiny\n"), ("name", "../x"), ("tune.study", "s\n")])
def test_names_are_matched_whole(tmp_path, tiny_image_folder, key, value):
    extra = (
        {"tune": {"space": {"train.optimizer.lr": {"float": [0.01, 0.1]}}}} if key.startswith("tune") else {}
    )
    recipe = tiny_recipe(tiny_image_folder, **extra)
    if key == "name":
        recipe["name"] = value
    else:
        recipe["tune"]["study"] = value
    with pytest.raises(RecipeError) as info:
        load_recipe(write_recipe(tmp_path / "r.yaml", recipe))
    assert info.value.key == key and "letters, digits" in str(info.value)


@pytest.mark.parametrize(
    "text", ["a/../../b", "../x", "..", ".", ".hidden", "x\n", "a\x00b", "c:\\win", "é", "", "x" * 400]
)
def test_safe_filename_never_leaves_its_folder(tmp_path, text):
    name = safe_filename(text)
    assert name and "/" not in name and "\\" not in name and not name.startswith(".")
    assert all(c.isprintable() and c.isascii() for c in name) and len(name) < 200
    assert name != text  # every one of these needed a change, so it carries a hash
    path = tmp_path / f"{name}.pt"
    path.write_bytes(b"")
    assert path.parent == tmp_path and path.exists()


def test_safe_filename_keeps_bench_variant_names_and_tells_changed_ones_apart():
    for text in ("scheduler=onecycle,freeze=2,seed=0", "optimizer=adamw(lr:0.001;wd:0.05),seed=1",
                 "model=[a;b],swa=on,seed=0", "base"):  # fmt: skip
        assert safe_filename(text) == text
    assert safe_filename("a/b") != safe_filename("a_b") and safe_filename("a/b") != safe_filename("a\\b")
    assert safe_filename("a/b") == safe_filename("a/b")  # stable across calls and processes
