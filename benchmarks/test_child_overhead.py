"""What running each variant in its own child process costs (bench/execution/local.py).

Each (variant, seed) of ``bench run`` is trained in a child forked from a forkserver that has
torch, MLflow and bench imported, with the recipe's decoded data passed as shared-memory
tensors. Against the same variants trained in the driver's own process (``run_task`` called
directly), timed interleaved round after round on one store, the difference is the price of the
isolation (a crash, the OOM killer, CUDA state or memory fragmentation of one variant cannot
touch the next; per-variant peak memory is clean). Printed: the median per-variant wall time
both ways, their ratio and difference, and the bare cost of one empty child (fork from the
forkserver + shared data handed over + exit). Not a pass/fail timing test.
"""

from __future__ import annotations

import statistics
import time

import pytest

from bench.data.cache import cached_splits, shared
from bench.execution.local import LocalExecutor, _noop_child
from bench.execution.runner import RecipeRunner
from bench.execution.task import run_task
from bench.recipe.load import load_recipe
from tests.recipes import tiny_recipe, write_recipe

ROUNDS = 6


@pytest.fixture
def tiny_image_folder(tmp_path_factory):
    import numpy as np

    from tests.conftest import _write_split

    root = tmp_path_factory.mktemp("tiny_folder")
    rng = np.random.default_rng(0)
    _write_split(root / "train", 40, rng)
    _write_split(root / "test", 12, rng)
    return root


def test_child_process_overhead_per_variant(tmp_path, tiny_image_folder, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    recipe = tiny_recipe(tiny_image_folder, **{"train.device": "cpu", "train.epochs": 1,
                                                "seeds": list(range(2 * ROUNDS))})  # fmt: skip
    loaded = load_recipe(write_recipe(tmp_path / "r.yaml", recipe))
    runner = RecipeRunner(
        loaded, results_dir=tmp_path / "results", tracking_uri=f"sqlite:///{tmp_path / 'm.db'}"
    )
    client = runner.open_store()
    from bench.execution.progress import Progress

    exp_id, parent_id = runner.start(client, Progress(0, live=False))
    from bench.execution.task import TaskSpec

    spec = TaskSpec(loaded.name, str(runner.results_dir), runner.uri, exp_id, parent_id, inputs=runner.inputs)
    cached_splits(loaded.variants[0].body.data)
    splits = shared()
    executor = LocalExecutor()
    executor.run_one(spec, runner.loaded.variants[0], splits)  # start the forkserver (once per command)
    variants = runner.loaded.variants[1:]
    child, inproc = [], []
    for i in range(ROUNDS - 1):
        a, b = variants[2 * i], variants[2 * i + 1]
        t0 = time.perf_counter()
        assert executor.run_one(spec, a, splits)["status"] == "finished"
        t1 = time.perf_counter()
        assert run_task(spec, b, client=client)["status"] == "finished"
        t2 = time.perf_counter()
        child.append(t1 - t0), inproc.append(t2 - t1)
    empty = []
    ctx = executor.context()
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        proc = ctx.Process(target=_noop_child, args=(splits,))
        proc.start(), proc.join()
        empty.append(time.perf_counter() - t0)
    c, p, e = statistics.median(child), statistics.median(inproc), statistics.median(empty)
    print(f"\nper-variant wall time, 1-epoch tiny variant, median of {len(child)} interleaved rounds:")
    print(f"  child process (forkserver + shared data): {c * 1e3:7.0f} ms")
    print(f"  in the driver's process:                  {p * 1e3:7.0f} ms")
    print(f"  ratio child / in-process:                 {c / p:7.2f}   difference {(c - p) * 1e3:.0f} ms")
    print(f"  an empty child (fork + shared data + exit): {e * 1e3:5.0f} ms")
