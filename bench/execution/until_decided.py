"""``bench run --until-decided``: after the recipe's seeds, one seed more per round for every
variant whose comparison with the baseline is still undecided (and for the baseline, which every
comparison needs), until each is decided or has ``max_seeds`` seeds. The decision is
bench/report/sequential.py's (group-sequential: a look at every seed count from the recipe's seeds
to ``max_seeds``, α spent over them; Bonferroni over the recipe's comparisons).

Added seeds continue after the recipe's largest seed and are ordinary variants: the same run key
a recipe listing that seed would give, so they are claimed, resumed and recorded like any other.
A round is decided only from the runs of earlier rounds, so rerunning the command replays the
same rounds (finished runs are skipped) and continues where it stopped."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

from bench.errors import RecipeError
from bench.recipe.load import LoadedRecipe, Variant
from bench.recipe.matrix import stable_hash

ALPHA = 0.05


@dataclass(frozen=True)
class UntilDecided:
    max_seeds: int = 12  # the calibration's setting (bench calibrate, README table)
    min_effect: float | None = None  # None: the recipe's report.min_effect
    alpha: float = ALPHA

    def settings(self, loaded: LoadedRecipe) -> dict[str, Any]:
        """What the parent run's tag records: everything the decision depends on."""
        margin = self.min_effect if self.min_effect is not None else loaded.recipe.report.min_effect
        groups = list(dict.fromkeys(v.group for v in loaded.variants))
        return {"alpha": self.alpha, "min_effect": margin, "max_seeds": self.max_seeds,
                "family": len(groups) - 1, "baseline": baseline_of(loaded),
                "first_look": len(loaded.recipe.seeds)}  # fmt: skip


def check(loaded: LoadedRecipe, until: UntilDecided) -> None:
    """Refuse what the procedure cannot do, before anything trains."""
    r = loaded.recipe
    if r.init_seeds or r.data_seeds:
        raise RecipeError("--until-decided adds seeds; it does not combine with init_seeds/data_seeds",
                          source=loaded.source, key="init_seeds")  # fmt: skip
    if len({v.group for v in loaded.variants}) < 2:
        raise RecipeError("--until-decided needs a baseline and at least one variant to compare with it",
                          source=loaded.source, key="matrix")  # fmt: skip
    if until.max_seeds < len(r.seeds):
        raise RecipeError(f"--max-seeds {until.max_seeds} is below the recipe's {len(r.seeds)} seeds",
                          source="--max-seeds")  # fmt: skip


def baseline_of(loaded: LoadedRecipe) -> str:
    """The baseline group as the report resolves it: the recipe's, else the first variant."""
    groups = list(dict.fromkeys(v.group for v in loaded.variants))
    return loaded.recipe.baseline if loaded.recipe.baseline in groups else groups[0]


def with_seed(variant: Variant, seed: int) -> Variant:
    """``variant`` with another seed: named and keyed exactly as bench/recipe/load.py would."""
    name = f"{variant.group},seed={seed}" if variant.axes else f"seed={seed}"
    key = stable_hash({"config": variant.body.model_dump(mode="json"), "seed": seed}, 16)
    return dataclasses.replace(variant, seed=seed, name=name, run_key=key)


def accuracy(row: dict[str, Any]) -> float:
    """The accuracy of the model the run delivers (SWA's, EMA's, or the weights), as the report."""
    from bench.report.fetch import delivered_metrics
    from bench.report.stats import missing

    row = {k: v for k, v in row.items() if not missing(v)}
    delivered_metrics(row, row.get("delivered"))
    return float(row.get("test/acc", math.nan))


def next_variants(
    source: LoadedRecipe, known: list[Variant], rows: list[dict[str, Any]], until: UntilDecided
) -> tuple[list[Variant], dict[str, Any]]:
    """The variants of the next round (empty: stop) and every comparison's current verdict.
    ``source``: the recipe as loaded (run keys without input fingerprints); ``known``: every
    variant of the rounds so far; ``rows``: their runs.csv rows."""
    from bench.report import sequential

    settings = until.settings(source)
    base = settings["baseline"]
    groups = list(dict.fromkeys(v.group for v in source.variants))
    comparisons = [g for g in groups if g != base]
    by_seed: dict[str, dict] = {}
    for row in rows:
        if row.get("status") == "finished":
            by_seed.setdefault(row["group"], {})[row["seed"]] = accuracy(row)
    attempted = Counter(v.group for v in known)
    grow, verdicts = sequential.next_round(by_seed, base, comparisons, attempted, until.max_seeds,
                                           until.alpha, settings["min_effect"], settings["first_look"])  # fmt: skip
    template = {v.group: v for v in source.variants}
    seeds = source.recipe.seeds  # then the integers after the largest one
    sequence = [*seeds, *range(max(seeds) + 1, max(seeds) + 1 + until.max_seeds)]
    have = {(v.group, v.seed) for v in known}
    new: list[Variant] = []
    for group in grow:
        seed = sequence[attempted[group]]
        for g in (group, base):
            if (g, seed) not in have:
                have.add((g, seed))
                new.append(with_seed(template[g], seed))
    return new, verdicts
