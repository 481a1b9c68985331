"""The order in which a recipe's (variant, seed) tasks run, as part of the experimental design.

Run variant-major (every seed of A, then every seed of B), a change of machine load (another
user's job, thermal throttling, a noisy neighbour) lands on whole variants and reads as their
effect. ``seed-blocks`` (the default) runs one block per seed, each block holding every variant in
an order shuffled by ``order_seed``, so drift hits every arm alike and a paired comparison within
a seed sees the same conditions. ``random`` shuffles everything; ``variant`` is the old order.

The order is a pure function of the variants, the mode and the seed (derived from the recipe
name unless given), so the same command after a kill runs the same order (finished tasks are
skipped by their claim) and ``--dry-run`` lists exactly what ``bench run`` will do. Torch-free.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

from bench.recipe.matrix import stable_hash

ORDERS = ("seed-blocks", "variant", "random")
DEFAULT_ORDER = "seed-blocks"
ORDER_TAG, ORDER_SEED_TAG, POSITION_TAG = "bench.order", "bench.order_seed", "bench.position"

T = TypeVar("T")


def order_seed(recipe_name: str) -> int:
    """The shuffle's seed when none is given: stable across runs, machines and Python versions."""
    return int(stable_hash(f"run-order:{recipe_name}")[:8], 16)


def run_order(variants: Sequence[T], how: str = DEFAULT_ORDER, seed: int = 0) -> list[T]:
    """``variants`` (in recipe order) in the order they are to run."""
    if how not in ORDERS:
        raise ValueError(f"unknown run order {how!r}; one of: {', '.join(ORDERS)}")
    rng = random.Random(seed)
    if how == "variant":
        return list(variants)
    if how == "random":
        out = list(variants)
        rng.shuffle(out)
        return out
    blocks: dict[tuple, list[T]] = {}
    for v in variants:  # a block: every random stream a task uses; blocks in the recipe's seed order
        blocks.setdefault((v.seed, v.init_seed, v.data_seed), []).append(v)
    out = []
    for block in blocks.values():
        rng.shuffle(block)  # each block its own draw from the one stream
        out.extend(block)
    return out
