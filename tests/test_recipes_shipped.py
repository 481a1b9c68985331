"""Every recipe shipped in recipes/ loads, expands and names an existing baseline; the GPU study
recipes run end to end at tiny size on CPU (data, model and matrix shrunk by overrides).

The GPU recipes use recipe keys added alongside them (precision ``tf32``, ``train.compile``,
``train.tta``, ``train.ema``, ``data.normalize``, ``scheduler.interval``). Where the schema in
this checkout does not know a key yet, ``this_schema`` strips exactly those keys, so everything
else in the recipes is still checked; once the schema has them nothing is stripped.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from bench.recipe.load import load_raw, load_recipe
from tests.helpers import HAS_INTERVAL, NEW_KEYS, fresh_store, this_schema
from tests.recipes import write_recipe

REPO = Path(__file__).resolve().parent.parent
RECIPES = sorted((REPO / "recipes").glob("*.yaml"))
GPU_RECIPES = ["cifar10_resnet18", "cifar10_finetune_pretrain", "cifar10_finetune", "cifar10_speedrun"]
MISSING = [k for k, known in NEW_KEYS.items() if not known] + ([] if HAS_INTERVAL else ["scheduler.interval"])


def _uses_missing_keys(path: Path) -> bool:
    return this_schema(load_raw(path)) != load_raw(path)


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_shipped_recipe_loads_and_names_an_existing_baseline(path, request):
    if MISSING and _uses_missing_keys(path):
        request.applymarker(pytest.mark.xfail(reason=f"schema lacks {MISSING}", strict=True))
    loaded = load_recipe(path)
    assert loaded.variants and loaded.name == path.stem
    groups = {v.group for v in loaded.variants}
    assert loaded.recipe.baseline is None or loaded.recipe.baseline in groups, sorted(groups)


@pytest.mark.parametrize("name", GPU_RECIPES)
def test_gpu_recipes_validate_with_this_checkouts_schema(name, tmp_path):
    raw = this_schema(load_raw(REPO / "recipes" / f"{name}.yaml"))
    loaded = load_recipe(write_recipe(tmp_path / f"{name}.yaml", raw))
    body = loaded.variants[0].body
    assert body.model.name in ("resnet18_cifar", "airbench94") and not body.model.pretrained
    assert body.data.name == "cifar10"  # nothing downloads: runs on an offline GPU machine
    if name == "cifar10_resnet18" and not MISSING:
        assert len({v.group for v in loaded.variants}) == 8 and loaded.recipe.seeds == [0, 1, 2]
    if name == "cifar10_finetune":
        assert "cifar10_finetune_pretrain/weights/seed=0.pt" in body.model.weights
        assert {v.body.train.freeze for v in loaded.variants} == {0, 2}


def _runnable(name: str, root: Path, tmp: Path, overrides: list[str]) -> Path:
    """The shipped recipe on the tiny image folder, shrunk by ``overrides``, written to ``tmp``."""
    tiny = [f"data.root={root}", "data.name=imagefolder", "data.classes=null", "data.batch_size=32",
            "data.eval_batch_size=64", "train.device=cpu", "seeds=[0]", "train.warmup_steps=1"]  # fmt: skip
    raw = this_schema(load_raw(REPO / "recipes" / f"{name}.yaml", overrides=[*tiny, *overrides]))
    return write_recipe(tmp / f"{name}.yaml", raw)


def _finished(results: Path, name: str) -> pd.DataFrame:
    table = pd.read_csv(results / name / "runs.csv")
    assert (table["status"] == "finished").all(), table[["variant", "status", "reason"]]
    assert table["test/acc"].between(0, 1).all()
    return table


@pytest.mark.slow
def test_gpu_recipes_run_end_to_end_at_tiny_size_on_cpu(tmp_path, tiny_image_folder):
    from tests.helpers import bench_main as bench  # in process: the subprocess start is not under test

    results, uri = tmp_path / "results", fresh_store(tmp_path / "mlflow.db")
    small_resnet = ["model.name=test_resnet", "train.epochs=1"]
    paths = [
        _runnable("cifar10_resnet18", tiny_image_folder, tmp_path, [*small_resnet, "train.precision=fp32", "train.compile=false", "~baseline"]),
        _runnable("cifar10_finetune_pretrain", tiny_image_folder, tmp_path, [*small_resnet, "train.precision=fp32"]),
        _runnable(
            "cifar10_finetune", tiny_image_folder, tmp_path,
            ["model.name=test_resnet", "train.epochs=2", "train.precision=fp32", "~matrix.exclude",
             "matrix.train.freeze=[2]", "matrix.train.scheduler=[{name: cosine, warmup_epochs: 0.5, interval: step}]",
             "matrix.train.swa=[null, {start_epoch: 1, lr_factor: 0.2, anneal_epochs: 1}]",
             "baseline=scheduler=cosine,freeze=2,optimizer=sgd,swa=none"],
        ),
        _runnable("cifar10_speedrun", tiny_image_folder, tmp_path,
                  ["model.kwargs.base_width=8", "train.epochs=2", "train.precision=fp32", "data.eval_batch_size=48"]),
    ]  # fmt: skip
    for path in paths:
        proc = bench("run", str(path), "--results-dir", str(results), "--tracking-uri", uri)
        assert proc.returncode == 0, f"{path.name}: {proc.stderr[-3000:]}"
    _finished(results, "cifar10_resnet18")
    _finished(results, "cifar10_finetune_pretrain")
    finetune = _finished(results, "cifar10_finetune")
    assert len(finetune) == 4  # optimizer x swa at fp32 (the full matrix is validated above)
    speedrun = _finished(results, "cifar10_speedrun")
    assert yaml.safe_load(paths[-1].read_text())["model"]["name"] == "airbench94" and len(speedrun) >= 1


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_shipped_swa_lowers_the_lr_of_every_optimizer_it_is_crossed_with(path, request):
    """An SWA axis crossed with SGD and AdamW must mean a cut for both: in the engine's own plan,
    no param group's SWA LR is above the peak it had before SWA took over."""
    from bench.plan.schedule import plan_variant

    if MISSING and _uses_missing_keys(path):
        pytest.skip(f"schema lacks {MISSING}")
    firsts = {}
    for v in load_recipe(path).variants:
        if v.body.train.swa is not None:
            firsts.setdefault((v.body.train.optimizer.name, v.body.train.scheduler.name), v)
    for variant in firsts.values():
        swa = variant.body.train.swa
        plan = plan_variant(variant, 1, num_classes=10, cuda=True)
        lrs = plan.lrs.groupby(["param_group", plan.lrs["epoch"] >= swa.start_epoch])["lr"].max().unstack()
        assert (lrs[True] <= lrs[False] * (1 + 1e-9)).all(), (variant.group, lrs[True] / lrs[False])
        assert not [w for w in plan.warnings if "swa" in w], plan.warnings
