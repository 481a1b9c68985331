"""A variant is scored on the model it delivers: EMA's and SWA's averaged models, not the raw
weights they were averaged from; the raw weights' accuracy stays beside it as ``*/acc_raw``."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from bench.recipe.load import load_recipe
from tests.helpers import fresh_store
from tests.recipes import tiny_recipe, write_recipe


@pytest.mark.slow
@pytest.mark.parametrize("trick", ["ema", "swa"])
def test_averaging_trick_is_scored_and_exported_as_its_averaged_model(tmp_path, tiny_image_folder, trick,
                                                                      capture_hook):  # fmt: skip
    from bench.engine.loop import run_variant

    setting = {"ema": {"decay": 0.5, "every": 1}, "swa": {"start_epoch": 1, "lr_factor": 0.5}}[trick]
    recipe = tiny_recipe(
        tiny_image_folder, **{"train.device": "cpu", "train.epochs": 3, f"train.{trick}": setting}
    )
    [variant] = load_recipe(write_recipe(tmp_path / "r.yaml", recipe)).variants
    keep = capture_hook()
    result = run_variant(variant, hooks=[keep], run_dir=tmp_path / "run")
    m = result.metrics
    assert result.delivered == trick
    assert m["test/acc"] == m[f"test/acc_{trick}"]  # the delivered model's accuracy is the variant's
    assert m["test/acc_raw"] == result.history[-1]["test/acc"]  # the trained weights' kept beside it
    averaged = next(t for t in keep.state.tricks if t.name == trick).model.module.state_dict()
    exported = torch.load(result.weights_path, weights_only=True)
    assert all(torch.equal(exported[k], averaged[k]) for k in averaged)  # and it is what is exported
    live = keep.state.model.state_dict()
    assert any(not torch.equal(exported[k], live[k]) for k in live if k.endswith("weight"))


@pytest.mark.slow
def test_runs_csv_and_mlflow_carry_the_delivered_accuracy(tmp_path, tiny_image_folder):
    from bench.execution.runner import RecipeRunner

    recipe = tiny_recipe(tiny_image_folder, name="delivered", matrix={
        "train.ema": [None, {"decay": 0.995, "every": 1}]})  # the EMA stays near the start  # fmt: skip
    path = write_recipe(tmp_path / "delivered.yaml", recipe)
    uri = fresh_store(tmp_path / "mlflow.db")
    RecipeRunner(load_recipe(path), results_dir=tmp_path / "results", tracking_uri=uri).run()
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("delivered")
    runs = {r.data.tags["bench.group"]: r for r in client.search_runs([exp.experiment_id])
            if "bench.group" in r.data.tags}  # fmt: skip
    ema = runs["ema=on"]
    assert (
        ema.data.tags["bench.delivered"] == "ema"
        and runs["ema=none"].data.tags["bench.delivered"] == "weights"
    )
    assert ema.data.metrics["test/acc"] == ema.data.metrics["test/acc_ema"]  # MLflow's latest value
    assert ema.data.metrics["test/acc_ema"] != ema.data.metrics["test/acc_raw"]
    table = pd.read_csv(tmp_path / "results" / "delivered" / "runs.csv").set_index("group")
    assert table.loc["ema=on", "test/acc"] == pytest.approx(ema.data.metrics["test/acc_ema"])
    assert table.loc["ema=on", "delivered"] == "ema"


def test_runs_recorded_before_delivery_existed_are_read_as_they_exported():
    from bench.report.fetch import delivered_metrics

    # old SWA runs exported the averaged model but logged the raw weights' accuracy as test/acc
    old_swa = {"test/acc": 0.60, "test/acc_swa": 0.70, "val/acc": 0.5, "val/acc_swa": 0.55}
    delivered_metrics(old_swa, None)
    assert old_swa["test/acc"] == 0.70 and old_swa["test/acc_raw"] == 0.60 and old_swa["delivered"] == "swa"
    assert old_swa["val/acc"] == 0.55
    old_ema = {"test/acc": 0.60, "test/acc_ema": 0.65}  # exported the raw weights
    delivered_metrics(old_ema, None)
    assert old_ema["test/acc"] == 0.60 and old_ema["delivered"] == "weights"
