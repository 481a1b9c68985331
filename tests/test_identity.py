"""A run's identity includes its inputs' content (bench/execution/identity.py): the weights file a
variant starts from (sha256, cached by path, size and mtime) and the data it reads (a listing of
file names and sizes, or an archive's sha256). Re-pretraining makes downstream variants train
again; a copy of the same data does not. A variant skipped for lack of a device is not final."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from bench.execution import identity
from bench.recipe.load import load_recipe
from tests.helpers import all_runs, bench_in_process, bench_main, children, fresh_store, table
from tests.recipes import tiny_recipe, write_recipe


def keys(recipe: Path) -> list[str]:
    loaded, _ = identity.with_input_fingerprints(load_recipe(recipe))
    return [v.run_key for v in loaded.variants]


def test_weights_content_changes_the_run_key_and_is_hashed_once(tmp_path, tiny_image_folder):
    weights = tmp_path / "start.pt"
    weights.write_bytes(b"first weights")
    recipe = write_recipe(
        tmp_path / "r.yaml", tiny_recipe(tiny_image_folder, **{"model.weights": str(weights)})
    )
    [first] = keys(recipe)
    assert keys(recipe) == [first]  # stable
    [plain] = load_recipe(recipe).variants
    assert first != plain.run_key  # the recipe text alone is not the identity

    # the cache folder is shared by the session's tests: find this file's entry by its path
    entries = (Path(os.environ["BENCH_CACHE_DIR"]) / "fingerprints").glob("*.json")
    [cache] = [e for e in entries if json.loads(e.read_text()).get("path") == str(weights.resolve())]
    saved = json.loads(cache.read_text())
    cache.write_text(json.dumps({**saved, "sha256": "from-the-cache"}))
    assert identity.file_sha256(weights) == "from-the-cache"  # same path, size, mtime: not read again

    weights.write_bytes(b"other weights")  # re-pretrained: same path, other content
    [second] = keys(recipe)
    assert second != first
    weights.unlink()
    [missing] = keys(recipe)
    assert missing not in (first, second)
    loaded, inputs = identity.with_input_fingerprints(load_recipe(recipe))
    assert inputs[missing][identity.WEIGHTS_TAG] == "missing"


def test_data_listing_changes_with_files_not_with_a_copy(tmp_path, tiny_image_folder):
    data = tmp_path / "data"
    shutil.copytree(tiny_image_folder, data)
    recipe = write_recipe(tmp_path / "r.yaml", tiny_recipe(data))
    [first] = keys(recipe)
    shutil.rmtree(data)
    shutil.copytree(tiny_image_folder, data, copy_function=shutil.copy)  # new mtimes, same files
    assert keys(recipe) == [first]
    (data / "test" / "red" / "extra.jpg").write_bytes((data / "test" / "red" / "0000.jpg").read_bytes())
    assert keys(recipe) != [first]
    (data / "notes.txt").write_text("beside the data set, not read by it")
    (data / "test" / "red" / "extra.jpg").unlink()
    assert keys(recipe) == [first]


def test_cifar_archive_is_fingerprinted_by_content(tmp_path):
    (tmp_path / identity.CIFAR10_ARCHIVE).write_bytes(b"archive bytes")
    cfg = load_recipe(
        write_recipe(tmp_path / "r.yaml", tiny_recipe(tmp_path, **{"data.name": "cifar10"}))
    ).variants[0]
    assert identity.data_fingerprint(cfg.body.data).startswith("sha256:")
    assert identity.data_sources("cifar10", tmp_path) == [tmp_path / identity.CIFAR10_ARCHIVE]


@pytest.mark.slow
def test_re_pretraining_makes_downstream_variants_train_again(tmp_path, tiny_image_folder):
    def pretrain(lr: float) -> Path:
        return write_recipe(tmp_path / "pre.yaml", tiny_recipe(tiny_image_folder, name="pre", **{
            "train.device": "cpu", "train.epochs": 1, "train.optimizer.lr": lr}))  # fmt: skip

    downstream = write_recipe(tmp_path / "down.yaml", tiny_recipe(tiny_image_folder, name="down", **{
        "train.device": "cpu", "train.epochs": 1,
        "model.weights": "${BENCH_RESULTS_DIR}/pre/weights/seed=0.pt"}))  # fmt: skip

    def run_downstream() -> str:
        """``bench run`` of the downstream recipe, in process (no fault to arm, no signal): its
        output, whose progress lines say whether the variant trained."""
        proc = bench_main("run", str(downstream), "--results-dir", str(tmp_path / "results"),
                          "--tracking-uri", fresh_store(tmp_path / "mlflow.db"))  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stderr

    assert bench_in_process(tmp_path, pretrain(0.05)) == 0
    assert "seed=0 | epoch 1/1 loss" in run_downstream()
    err = run_downstream()  # unchanged inputs: skipped
    assert "already finished, skipped" in err and "epoch 1/1" not in err, err
    [before] = children(all_runs(tmp_path, "down"))
    assert before.data.tags[identity.WEIGHTS_TAG].startswith("sha256:")

    assert bench_in_process(tmp_path, pretrain(0.02)) == 0  # re-pretrained: other weights
    assert "seed=0 | epoch 1/1 loss" in run_downstream()  # the downstream variant trained again
    runs = children(all_runs(tmp_path, "down"))
    assert len(runs) == 2 and len({r.data.tags["bench.run_key"] for r in runs}) == 2
    assert len({r.data.tags[identity.WEIGHTS_TAG] for r in runs}) == 2
    assert table(tmp_path, "down")["mlflow_run_id"].tolist() == [
        r.info.run_id for r in runs if r.info.run_id != before.info.run_id
    ]


@pytest.mark.slow
def test_skipped_for_lack_of_a_device_is_tried_again(tmp_path, tiny_image_folder):
    recipe = write_recipe(tmp_path / "r.yaml", tiny_recipe(tiny_image_folder, **{
        "train.precision": "amp_fp16", "train.epochs": 1}))  # fmt: skip
    for attempt in ("1", "2"):
        assert bench_in_process(tmp_path, recipe, "--record-skips") == 0  # every run skipped: else exit 2
        [run] = children(all_runs(tmp_path))
        assert run.data.tags["bench.status"] == "skipped" and "CUDA" in run.data.tags["bench.reason"]
        assert run.data.tags["bench.attempt"] == attempt  # not final: a machine with a GPU trains it
