"""Labels hide bundles: ``optimizer=adamw`` changes seven keys, ``scheduler=cosine`` can add a
warm-up. The dry run and the report list every resolved key a variant changes against the
baseline, and say which axis values are bundles."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from bench.cli import main
from bench.execution.recorded import Recording, open_run
from bench.recipe.changes import UNSET, config_changes, recipe_changes
from bench.recipe.load import load_recipe
from bench.report import changes, fetch
from bench.tracking.mlflow_store import ensure_experiment
from tests.recipes import tiny_recipe, write_recipe


def _line(out: str, start: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(start))


def test_dry_run_lists_every_key_the_adamw_variant_changes(tmp_path, capsys):
    assert main(["run", "recipes/smoke.yaml", "--dry-run", "--results-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "changes against the baseline scheduler=cosine,freeze=0" in out
    line = _line(out, "  optimizer=adamw ")  # once per variant, not per seed
    assert out.count("\n  optimizer=adamw ") == 2  # its change line and its axis-value line
    assert "7 keys" in line and "name sgd->adamw" in line
    assert "lr 0.05->0.002" in line and "weight_decay 0.0005->0.05" in line and "momentum 0.9->unset" in line
    assert "freeze 0->3" in _line(out, "  scheduler=cosine,freeze=3 ")
    axis = [line for line in out.splitlines() if line.startswith("  optimizer=adamw ")][1]
    assert "bundle" in axis and "lr" in axis and "weight_decay" in axis
    assert "bundle" not in _line(out, "  freeze=3 ") and "bundle" not in _line(out, "  swa=on ")

    assert (
        main(["run", "recipes/smoke.yaml", "--dry-run", "--show-changes", "--results-dir", str(tmp_path)])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    for key in ("train.optimizer.lr 0.05->0.002", "train.optimizer.weight_decay 0.0005->0.05"):
        assert f"      {key}" in lines  # one key per line, in full


def test_changes_are_of_the_resolved_config():
    loaded = load_recipe("recipes/smoke.yaml")
    by_group = {v.group: v.config for v in loaded.variants}
    found = config_changes(by_group["scheduler=cosine,freeze=0"], by_group["optimizer=adamw"])
    assert found["train.optimizer.lr"] == (0.05, 0.002)
    assert found["train.optimizer.head_lr_mult"] == (1.0, 10.0)  # a default, changed
    assert found["train.optimizer.momentum"] == (0.9, UNSET)  # dropped with the sgd block
    assert len(found) == 7


def test_cosine_with_warmup_is_a_bundle_in_cifar10_resnet():
    loaded = load_recipe("recipes/cifar10_resnet.yaml")
    axes = {(a.axis, a.value): a for a in recipe_changes(loaded).axes}
    cosine = axes[("scheduler", "cosine")]
    assert cosine.bundle and cosine.n_keys == 2
    assert cosine.beyond == {"train.scheduler.warmup_epochs": (0.0, 1.0)}
    assert axes[("optimizer", "adamw")].bundle and axes[("optimizer", "adamw")].n_keys == 7
    for plain in (("freeze", "2"), ("precision", "amp_bf16"), ("swa", "on")):
        assert axes[plain].bundle is False, plain


@pytest.fixture
def store(tmp_path, tiny_image_folder):
    """A real MLflow store whose child runs were opened by bench's own recording path (which logs
    the resolved config as params); nothing trains."""
    recipe = tiny_recipe(
        tiny_image_folder, name="bundles", seeds=[0, 1],
        matrix={"train.scheduler": [{"name": "onecycle"}, {"name": "cosine", "warmup_epochs": 1}],
                "include": [{"train.optimizer": {"name": "adamw", "lr": 2.0e-3, "weight_decay": 0.05}}]},
    )  # fmt: skip
    recipe["baseline"] = "scheduler=onecycle"
    loaded = load_recipe(write_recipe(tmp_path / "bundles.yaml", recipe))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = ensure_experiment(client, uri, "bundles")  # artifacts beside the store, not in ./mlruns
    parent = client.create_run(exp, tags={"bench.kind": "recipe"}).info.run_id
    for variant in loaded.variants:
        open_run(Recording(client, exp, loaded.name, parent_id=parent), variant)
    return fetch.fetch_runs(client, "bundles")


def test_report_lists_what_each_variant_changes_from_the_store(store):
    table = changes.changes_table(store.runs, store.params, "scheduler=onecycle").set_index("variant")
    assert list(table.index) == ["scheduler=onecycle", "scheduler=cosine", "optimizer=adamw"]
    assert table.loc["scheduler=onecycle", "n_keys"] == 0
    adamw = table.loc["optimizer=adamw"]
    assert adamw["n_keys"] == 5  # its 4 optimizer keys, and the recipe's base scheduler (cosine)
    for text in ("train.optimizer.name sgd->adamw", "train.optimizer.lr 0.05->0.002",
                 "train.optimizer.weight_decay 0.0005->0.05", "train.optimizer.momentum 0.9->unset"):  # fmt: skip
        assert text in adamw["changes"]
    assert "seed" not in adamw["keys"]

    axes = changes.bundle_axes(store.runs, store.params, "scheduler=onecycle").set_index(["axis", "value"])
    assert (
        bool(axes.loc[("scheduler", "cosine"), "bundle"]) and axes.loc[("scheduler", "cosine"), "n_keys"] == 2
    )
    assert axes.loc[("scheduler", "cosine"), "beyond"] == "train.scheduler.warmup_epochs 0.0->1.0"
    assert bool(axes.loc[("optimizer", "adamw"), "bundle"])

    from bench.report.document import Doc, to_markdown

    text = to_markdown(Doc("r", changes.blocks(store.runs, store.params, "scheduler=onecycle")), Path("."))
    assert "## What each variant changes against the baseline" in text
    assert (
        "`train.optimizer.lr` 0.05->0.002" in text and "**Bundles**" in text and "`scheduler=cosine`" in text
    )
