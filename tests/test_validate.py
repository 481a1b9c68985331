"""The validation layer (bench/validate/recipe.py): component names, arguments bound to the torch and
optuna signatures, and the freeze depth, all checked before anything is recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cli import main
from bench.errors import RecipeError
from bench.recipe.load import load_recipe
from bench.validate.recipe import load_validated, validate_recipe
from tests.recipes import tiny_recipe, write_recipe


def run_cli(tmp_path: Path, recipe: Path, *extra: str) -> int:
    return main(["run", str(recipe), "--results-dir", str(tmp_path / "results"),
                 "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", *extra])  # fmt: skip


def assert_nothing_recorded(tmp_path: Path) -> None:
    assert not (tmp_path / "mlflow.db").exists(), "an MLflow store was created"
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


@pytest.mark.parametrize(
    ("dotted", "key", "fragments"),
    [
        (
            {"train.scheduler": {"name": "step", "step_sise": 2}},
            "train.scheduler",
            ["step_sise", "step_size"],
        ),
        (
            {"train.optimizer": {"name": "sgd", "lr": 0.1, "momentun": 0.9}},
            "train.optimizer",
            ["momentun", "momentum", "nesterov"],
        ),
        ({"train.scheduler": {"name": "onecycle", "warmup_epochs": 1}}, "train.scheduler", ["warmup_epochs"]),
        ({"train.optimizer": {"name": "adamm"}}, "train.optimizer", ["did you mean 'adam", "adamw"]),
        ({"train.loss": "crossentropy"}, "train.loss", ["cross_entropy"]),
        ({"data.name": "cifar100"}, "data.name", ["cifar10", "imagefolder"]),
        (
            {"train.scheduler": {"name": "lambda", "lambda_kwargs": {"endd": 0.1}}},
            "train.scheduler",
            ["lr_lambda 'linear_decay'", "endd"],
        ),
    ],
)
@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
def test_bad_component_exits_2_before_anything_is_recorded(tmp_path, tiny_image_folder, capsys, dotted, key,
                                                           fragments, dry_run):  # fmt: skip
    recipe = write_recipe(tmp_path / "r.yaml", tiny_recipe(tiny_image_folder, **dotted))
    assert run_cli(tmp_path, recipe, *(["--dry-run"] if dry_run else [])) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert f"{recipe}: {key}: " in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert_nothing_recorded(tmp_path)


def test_too_deep_freeze_exits_2_naming_the_key_and_range_before_anything_is_recorded(
    tmp_path, tiny_image_folder, capsys
):
    recipe = write_recipe(
        tmp_path / "r.yaml", tiny_recipe(tiny_image_folder, matrix={"train.freeze": [0, 9]})
    )
    assert run_cli(tmp_path, recipe) == 2
    err = capsys.readouterr().err
    assert f"{recipe}: train.freeze: variant freeze=9: cannot freeze 9 stages" in err, err
    assert "allowed: 0..5" in err and "Traceback" not in err
    assert_nothing_recorded(tmp_path)


def test_freeze_within_the_model_passes_and_the_model_is_built_without_memory(tmp_path, tiny_image_folder):
    from bench.validate.recipe import _model_without_weights

    recipe = tiny_recipe(tiny_image_folder, matrix={"train.freeze": [0, 3, 5]}, **{"model.name": "resnet18"})
    loaded = load_validated(write_recipe(tmp_path / "r.yaml", recipe))
    assert len(loaded.variants) == 3
    model = _model_without_weights(loaded.variants[0].body.model.model_dump_json())
    assert {p.device.type for p in model.parameters()} == {"meta"}


def test_freeze_is_checked_for_user_models(tmp_path, tiny_image_folder):
    """The user's factory (conv, pool, flatten, head) has one stage before its head."""
    recipe = tiny_recipe(tiny_image_folder, **{"model.name": "tests.test_components:user_model",
                                               "train.freeze": 4})  # fmt: skip
    with pytest.raises(RecipeError) as info:
        load_validated(write_recipe(tmp_path / "r.yaml", recipe))
    assert info.value.key == "train.freeze" and "allowed: 0..1" in str(info.value)


def test_dry_run_checks_timm_names_and_freeze_only_in_the_full_validation(tmp_path, tiny_image_folder):
    recipe = tiny_recipe(tiny_image_folder, **{"model.name": "resnet_typo_999", "train.freeze": 3})
    loaded = load_recipe(write_recipe(tmp_path / "r.yaml", recipe))
    validate_recipe(loaded, full=False)  # a quick check cannot know timm's names without torch
    with pytest.raises(RecipeError) as info:
        validate_recipe(loaded)
    assert info.value.key == "model.name" and "unknown model 'resnet_typo_999'" in str(info.value)


def test_each_distinct_component_is_checked_once_and_errors_name_the_variant(tmp_path, tiny_image_folder):
    matrix = {"train.optimizer": [{"name": "sgd", "lr": 0.1}, {"name": "adamw", "lr": 0.1, "betaz": [0.9, 0.99]}],
              "train.freeze": [0, 1]}  # fmt: skip
    recipe = write_recipe(tmp_path / "r.yaml", tiny_recipe(tiny_image_folder, matrix=matrix))
    with pytest.raises(RecipeError) as info:
        load_validated(recipe)
    assert "variant optimizer=adamw,freeze=0" in str(info.value) and "betaz" in str(info.value)


@pytest.mark.parametrize(
    ("tune", "key", "words"),
    [
        ({"pruner": {"name": "median", "n_startup_trial": 2}}, "tune.pruner", ["n_startup_trials"]),
        ({"sampler": {"name": "tpe", "n_startup": 2}}, "tune.sampler", ["n_startup_trials"]),
    ],
)
def test_tune_options_are_bound_to_the_optuna_classes(tmp_path, tiny_image_folder, tune, key, words):
    space = {"train.optimizer.lr": {"float": [0.01, 0.1], "log": True}}
    recipe = tiny_recipe(tiny_image_folder, tune={**tune, "space": space})
    loaded = load_recipe(write_recipe(tmp_path / "r.yaml", recipe))
    validate_recipe(loaded, full=False)  # optuna is not imported for a dry run
    with pytest.raises(RecipeError) as info:
        validate_recipe(loaded)
    assert info.value.key == key
    for word in words:
        assert word in str(info.value)


def test_a_too_deep_freeze_in_a_search_space_is_refused_before_the_study(tmp_path, tiny_image_folder):
    from bench.tune.study import TuneOptions, build_plan

    space = {"train.freeze": {"int": [0, 7]}}
    recipe = write_recipe(tmp_path / "r.yaml", tiny_recipe(tiny_image_folder, tune={"space": space}))
    with pytest.raises(RecipeError) as info:
        build_plan(TuneOptions(recipe=str(recipe), results_dir=str(tmp_path / "results")), quiet=True)
    assert info.value.key == "tune.space.train.freeze" and "allowed: 0..5" in str(info.value)
    assert not (tmp_path / "results").exists()
