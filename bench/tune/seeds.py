"""Which seeds choose a configuration and which report it, kept apart: trials train on the
*tuning* seeds, the re-check of the top configurations on *fresh* seeds after them, and best.yaml
records both (``tuned.tuned_on_seeds``) so a later ``bench run --overlay`` moves off them too.
Every trial uses the same tuning seeds in the same order, so trials pair up seed by seed."""

from __future__ import annotations

from bench.recipe.tune import shift_seeds  # noqa: F401 - the overlay side of the same rule


def tuning_seeds(first: list[int], k: int) -> list[int]:
    """The recipe's first ``k`` seeds, continued with the integers after the largest."""
    seeds = list(first[:k])
    while len(seeds) < k:
        seeds.append(max(seeds) + 1)
    return seeds


def fresh_seeds(used: list[int], n: int) -> list[int]:
    """``n`` seeds after every used one: never a seed that chose the configuration."""
    start = max(used) + 1 if used else 0
    return list(range(start, start + n))
