"""Run order as part of the design: seed blocks with the variants shuffled inside each by a recorded
seed, the same order on every invocation, listed by ``--dry-run`` as ``bench run`` runs it; and
child processes whose torch threads fit the cores granted."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench.recipe.load import load_recipe
from tests.helpers import fresh_store
from tests.recipes import tiny_recipe, write_recipe

MATRIX = {"train.optimizer.lr": [0.05, 0.02, 0.01]}


def three_by_two(tmp_path, root, name="order"):
    recipe = tiny_recipe(root, name=name, matrix=MATRIX, seeds=[0, 1])
    recipe["train"]["epochs"] = 1
    recipe["data"]["subset"], recipe["data"]["test_subset"] = 32, 16
    return write_recipe(tmp_path / f"{name}.yaml", recipe)


def is_seed_blocked(names: list[str], groups: list[str], seeds: list[int]) -> bool:
    """Every seed's runs together, in the recipe's seed order, each block one run per variant."""
    blocks = [names[i * len(groups) : (i + 1) * len(groups)] for i in range(len(seeds))]
    return all(sorted(block) == sorted(f"{g},seed={s}" for g in groups) for block, s in zip(blocks, seeds))


def test_seed_blocks_shuffle_within_each_block_the_same_way_every_time(tmp_path, tiny_image_folder):
    from bench.execution.order import order_seed, run_order

    variants = load_recipe(three_by_two(tmp_path, tiny_image_folder)).variants
    groups = list(dict.fromkeys(v.group for v in variants))
    first = [v.name for v in run_order(variants, "seed-blocks", order_seed("order"))]
    again = [v.name for v in run_order(list(variants), "seed-blocks", order_seed("order"))]
    assert first == again and is_seed_blocked(first, groups, [0, 1])
    # shuffled: over a few order seeds, blocks come in other orders than the recipe's, and differ
    recipe_order = [f"{g},seed={s}" for s in (0, 1) for g in groups]
    orders = {tuple(v.name for v in run_order(variants, "seed-blocks", s)) for s in range(8)}
    assert len(orders) > 2 and any(list(o) != recipe_order for o in orders)
    assert any(o[:3] != tuple(n.replace("seed=1", "seed=0") for n in o[3:]) for o in orders)
    assert [v.name for v in run_order(variants, "variant")] == [v.name for v in variants]
    shuffled = [v.name for v in run_order(variants, "random", 3)]
    assert sorted(shuffled) == sorted(first) and shuffled == [
        v.name for v in run_order(variants, "random", 3)
    ]


def dry_run_order(path, *extra: str) -> list[str]:
    out = subprocess.run([sys.executable, "-m", "bench.cli", "run", str(path), "--dry-run", *extra],
                         capture_output=True, text=True, check=True, timeout=120).stdout  # fmt: skip
    lines = out.split("position", 1)[1].splitlines()[1:7]
    assert [int(line.split()[0]) for line in lines] == [1, 2, 3, 4, 5, 6], out
    return [line.split()[1] for line in lines]


def test_dry_run_lists_the_seed_blocked_order_identically_twice(tmp_path, tiny_image_folder):
    path = three_by_two(tmp_path, tiny_image_folder)
    groups = [f"lr={v}" for v in MATRIX["train.optimizer.lr"]]
    first, second = dry_run_order(path), dry_run_order(path)
    assert first == second and is_seed_blocked(first, groups, [0, 1])
    from bench.execution.order import order_seed, run_order

    assert first == [
        v.name for v in run_order(load_recipe(path).variants, "seed-blocks", order_seed("order"))
    ]
    assert dry_run_order(path, "--order", "variant") == [f"{g},seed={s}" for g in groups for s in (0, 1)]


@pytest.fixture(scope="module")
def executed(tmp_path_factory, tiny_image_folder):
    """A real ``bench run`` of 3 variants x 2 seeds, with OMP_NUM_THREADS asking for more threads
    than this machine grants."""
    from mlflow.tracking import MlflowClient

    tmp = tmp_path_factory.mktemp("order_run")
    path = three_by_two(tmp, tiny_image_folder)
    uri = fresh_store(tmp / "mlflow.db")
    env = {**os.environ, "OMP_NUM_THREADS": "64", "MLFLOW_TRACKING_URI": ""}
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "run", str(path), "--results-dir", str(tmp / "results"),
                           "--tracking-uri", uri], capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("order").experiment_id])
    return path, runs


@pytest.mark.slow
def test_bench_run_executes_in_the_dry_run_order_and_records_positions(executed):
    path, runs = executed
    children = sorted(
        (r for r in runs if "mlflow.parentRunId" in r.data.tags), key=lambda r: r.info.start_time
    )
    by_start = [r.data.tags["bench.variant"] for r in children]
    assert by_start == dry_run_order(path)
    assert [r.data.tags["bench.position"] for r in children] == ["1", "2", "3", "4", "5", "6"]
    from bench.execution.order import order_seed

    parent = next(r for r in runs if r.data.tags.get("bench.kind") == "recipe")
    assert parent.data.tags["bench.order"] == "seed-blocks"
    assert parent.data.tags["bench.order_seed"] == str(order_seed("order"))


@pytest.mark.slow
def test_child_processes_use_no_more_torch_threads_than_cores_granted(executed):
    _, runs = executed
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    granted = len(os.sched_getaffinity(0))
    assert {r.data.tags["env.torch_threads"] for r in children} == {str(granted)}
