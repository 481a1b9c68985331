"""Recipes: strict YAML, typed validation with errors that name file, key and allowed values,
dotted overrides, and matrix expansion into readably named variants."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.errors import RecipeError
from bench.recipe.load import load_recipe
from bench.recipe.yaml_loader import load_yaml_text
from bench.validate.recipe import load_validated
from tests.recipes import tiny_recipe, write_recipe


def test_exponent_floats_are_floats_not_strings():
    assert load_yaml_text("lr: 1e-3\nwd: 5E-4\nx: .5") == {"lr": 1e-3, "wd": 5e-4, "x": 0.5}


def test_duplicate_key_is_an_error_naming_key_and_line():
    with pytest.raises(RecipeError) as err:
        load_yaml_text("train:\n  epochs: 1\n  epochs: 2\n", source="r.yaml")
    assert (
        "duplicate key 'epochs'" in str(err.value)
        and "line 2" in str(err.value)
        and "r.yaml" in str(err.value)
    )


def test_merge_keys_merge_shallowly_with_own_keys_winning():
    text = (
        "base: &base {epochs: 2, precision: fp32, optimizer: {name: sgd}}\n"
        "train:\n  <<: *base\n  epochs: 5\n"
        "other:\n  <<: [{a: 1, b: 1}, {b: 2, c: 2}]\n"
    )
    loaded = load_yaml_text(text)
    assert loaded["train"] == {"epochs": 5, "precision": "fp32", "optimizer": {"name": "sgd"}}
    assert loaded["other"] == {"a": 1, "b": 1, "c": 2}  # the earlier merged mapping wins


def test_merge_keys_keep_the_duplicate_key_check():
    with pytest.raises(RecipeError, match=r"duplicate key 'epochs' \(first at line 3\)"):
        load_yaml_text("base: &b {epochs: 1}\ntrain:\n  epochs: 2\n  <<: *b\n  epochs: 3\n")
    with pytest.raises(RecipeError, match="duplicate key 'x'"):
        load_yaml_text("base: &b {x: 1, x: 2}\ntrain:\n  <<: *b\n")
    with pytest.raises(RecipeError, match="expected a mapping or list of mappings for merging"):
        load_yaml_text("train:\n  <<: 3\n")


def test_keys_that_differ_in_yaml_are_not_duplicates():
    assert load_yaml_text("{'1': a, 1: b, 'true': c}") == {"1": "a", 1: "b", "true": "c"}
    with pytest.raises(RecipeError) as err:  # different YAML keys, but one Python key: say so
        load_yaml_text("{1: a, true: b}")
    assert "duplicate" not in str(err.value) and "quote them" in str(err.value)


def test_a_recipe_with_merge_keys_loads(tmp_path, tiny_image_folder):
    text = (
        f"name: merged\ndata: {{name: imagefolder, root: {tiny_image_folder}}}\n"
        "_sgd: &sgd {name: sgd, lr: 0.1, momentum: 0.9}\n"
    )
    path = tmp_path / "r.yaml"
    path.write_text(text.replace("_sgd: ", "x_sgd: ") + "train:\n  optimizer:\n    <<: *sgd\n    lr: 0.2\n")
    with pytest.raises(RecipeError, match="x_sgd"):  # unknown top-level keys stay refused
        load_recipe(path)
    path.write_text(
        text.replace("_sgd: &sgd", "train: &t\n  optimizer: &sgd")
        + "matrix:\n  train.optimizer:\n    - *sgd\n    - {<<: *sgd, lr: 0.2}\n"
    )
    lrs = [v.body.train.optimizer.lr for v in load_validated(path).variants]
    assert lrs == [0.1, 0.2]


def test_python_tags_are_refused():
    with pytest.raises(RecipeError, match="Python tags are not allowed"):
        load_yaml_text("x: !!python/object/apply:os.system ['echo hi']")


def test_unknown_key_names_file_path_and_allowed_keys(tmp_path, tiny_image_folder):
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(tiny_image_folder, **{"train.epochz": 3}))
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    text = str(err.value)
    assert str(path) in text and "train.epochz" in text and "epochs" in text and "precision" in text


def test_wrong_type_names_the_key(tmp_path, tiny_image_folder):
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(tiny_image_folder, **{"train.epochs": "many"}))
    with pytest.raises(RecipeError, match=r"train\.epochs"):
        load_recipe(path)


def test_unknown_scheduler_lists_the_allowed_names(tmp_path, tiny_image_folder):
    path = write_recipe(
        tmp_path / "r.yaml", tiny_recipe(tiny_image_folder, **{"train.scheduler.name": "cosin"})
    )
    with pytest.raises(RecipeError) as err:
        load_validated(path)
    text = str(err.value)
    assert "train.scheduler" in text and "did you mean 'cosine'" in text and "onecycle" in text


def test_misspelt_scheduler_argument_is_bound_to_the_torch_signature(tmp_path, tiny_image_folder):
    recipe = tiny_recipe(tiny_image_folder, **{"train.scheduler": {"name": "step", "step_sise": 2}})
    with pytest.raises(RecipeError) as err:
        load_validated(write_recipe(tmp_path / "r.yaml", recipe))
    assert "step_sise" in str(err.value) and "step_size" in str(err.value)


def test_unknown_precision_lists_allowed_values(tmp_path, tiny_image_folder):
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(tiny_image_folder, **{"train.precision": "fp8"}))
    with pytest.raises(RecipeError, match="'fp32', 'tf32', 'amp_fp16' or 'amp_bf16'"):
        load_recipe(path)


def test_bad_variant_fails_up_front_naming_the_variant(tmp_path, tiny_image_folder):
    recipe = tiny_recipe(tiny_image_folder, matrix={"train.optimizer.name": ["sgd", "adamm"]})
    with pytest.raises(RecipeError) as err:
        load_validated(write_recipe(tmp_path / "r.yaml", recipe))
    assert "optimizer=adamm" in str(err.value) and "adamw" in str(err.value)


def test_overrides_use_dotted_keys_and_yaml_types(tmp_path, tiny_image_folder):
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(tiny_image_folder))
    loaded = load_recipe(path, ["train.epochs=1", "train.optimizer.lr=1e-2", "data.subset=40"])
    body = loaded.variants[0].body
    assert body.train.epochs == 1 and body.train.optimizer.lr == 0.01 and body.data.subset == 40


def test_override_of_unknown_key_is_rejected(tmp_path, tiny_image_folder):
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(tiny_image_folder))
    with pytest.raises(RecipeError, match="train.epoch"):
        load_recipe(path, ["train.epoch=1"])


def test_matrix_is_a_cartesian_product_with_exclude_include_and_seeds(tmp_path, tiny_image_folder):
    matrix = {
        "train.scheduler": [{"name": "cosine"}, {"name": "onecycle"}],
        "train.freeze": [0, 2],
        "exclude": [{"train.freeze": 2, "train.scheduler": {"name": "onecycle"}}],
        "include": [{"train.precision": "amp_bf16"}],
    }
    recipe = tiny_recipe(tiny_image_folder, matrix=matrix)
    recipe["seeds"] = [0, 1]
    loaded = load_recipe(write_recipe(tmp_path / "r.yaml", recipe))
    names = [v.name for v in loaded.variants]
    assert len(names) == 8 and len(set(names)) == 8
    assert "scheduler=onecycle,freeze=0,seed=1" in names
    assert "scheduler=onecycle,freeze=2,seed=0" not in names
    assert "precision=amp_bf16,seed=0" in names
    by_name = {v.name: v for v in loaded.variants}
    a, b = by_name["scheduler=cosine,freeze=2,seed=0"], by_name["scheduler=cosine,freeze=2,seed=1"]
    assert a.body.train.freeze == 2 and a.variant_id == b.variant_id and a.run_key != b.run_key
    assert a.group == "scheduler=cosine,freeze=2"


def test_run_key_changes_only_for_edited_variants(tmp_path, tiny_image_folder):
    recipe = tiny_recipe(tiny_image_folder, matrix={"train.freeze": [0, 1]})
    before = {v.name: v.run_key for v in load_recipe(write_recipe(tmp_path / "a.yaml", recipe)).variants}
    recipe["matrix"] = {"train.freeze": [0, 2]}
    after = {v.name: v.run_key for v in load_recipe(write_recipe(tmp_path / "b.yaml", recipe)).variants}
    assert before["freeze=0,seed=0"] == after["freeze=0,seed=0"]
    assert "freeze=2,seed=0" in after and "freeze=1,seed=0" not in after


RECIPES = sorted((Path(__file__).resolve().parent.parent / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_every_shipped_recipe_validates(path):
    loaded = load_validated(path)
    assert loaded.variants and all(v.body.name == loaded.name for v in loaded.variants)
