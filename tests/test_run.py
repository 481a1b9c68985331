"""``bench run`` end to end: variants trained, MLflow parent + children with the agreed names,
the pandas table under results/, progress on stderr."""

from __future__ import annotations

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import bench_main as bench  # in process: the interpreter start is not under test
from tests.helpers import fresh_store
from tests.recipes import tiny_recipe, write_recipe

pytestmark = pytest.mark.slow

METRICS = ["test/acc", "test/acc_oracle", "train/loss", "throughput/train_img_s", "throughput/eval_img_s",
           "memory/peak_rss_mb", "time/wall_s", "params/trainable", "params/total"]  # fmt: skip


def test_bench_run_records_every_variant_in_mlflow_and_results(tmp_path, tiny_image_folder):
    recipe = tiny_recipe(
        tiny_image_folder,
        name="mini",
        matrix={"train.precision": ["fp32", "amp_fp16"], "train.freeze": [0, 2]},
    )
    recipe["train"]["epochs"] = 1
    path = write_recipe(tmp_path / "mini.yaml", recipe)
    uri = fresh_store(tmp_path / "mlflow.db")
    proc = bench("run", str(path), "--results-dir", str(tmp_path / "results"), "--tracking-uri", uri)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[4/4 done]" in proc.stderr and "epoch 1/1 loss" in proc.stderr and "img/s" in proc.stderr

    table = pd.read_csv(tmp_path / "results" / "mini" / "runs.csv")
    assert len(table) == 4 and set(table["precision"]) == {"fp32", "amp_fp16"}
    skipped = table[table["precision"] == "amp_fp16"]
    assert set(skipped["status"]) == {"skipped"} and skipped["reason"].str.contains("CUDA").all()
    done = table[table["status"] == "finished"]
    assert len(done) == 2 and all(done[m].notna().all() for m in METRICS)

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("mini")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("bench.kind") == "recipe"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 4
    assert all(c.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for c in children)
    for child in children:
        tags = child.data.tags
        assert {"bench.variant", "bench.variant_id", "bench.seed", "bench.status", "bench.reason"} <= set(
            tags
        )
        assert child.data.params["train.precision"] == tags["axis.precision"]
        if tags["bench.status"] == "finished":
            assert set(METRICS) <= set(child.data.metrics)
            history = client.get_metric_history(child.info.run_id, "train/lr/all")
            assert len(history) == 1
            assert child.info.status == "FINISHED"
    assert sorted(table["mlflow_run_id"]) == sorted(c.info.run_id for c in children)
