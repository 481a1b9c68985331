"""The plan of a study: the recipe and its search space, loaded and validated, before anything
is created. Every process (the parent and each spawned worker) rebuilds it from ``TuneOptions``."""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import RecipeError
from bench.recipe.base import check_name
from bench.recipe.dotted import deep_merge
from bench.recipe.load import RUN_KEYS, LoadedRecipe, Variant
from bench.recipe.matrix import stable_hash
from bench.recipe.schema import RecipeBody
from bench.recipe.tune import TuneConfig
from bench.tracking import mlflow_store as store
from bench.tune.space import Space, validate_space
from bench.tune.storage import StorageSpec, resolve_storage
from bench.validate.recipe import load_validated as load_recipe
from bench.validate.recipe import validate_config as _validate


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def tuning_seeds(first: list[int], k: int) -> list[int]:
    """The recipe's first ``k`` seeds, continued with the integers after the largest."""
    seeds = list(first[:k])
    return seeds + list(range(max(seeds) + 1, max(seeds) + 1 + k - len(seeds)))


@dataclass
class TuneOptions:
    """The command line of ``bench tune`` (picklable: spawned workers receive it)."""

    recipe: str
    overrides: list[str] = field(default_factory=list)
    overlays: list[str] = field(default_factory=list)
    results_dir: str = "results"
    tracking_uri: str | None = None
    storage: str | None = None
    workers: int = 1
    study: str | None = None
    ray: Any = None  # bench.execution.cluster.RayOptions: the workers are Ray tasks

    def __post_init__(self) -> None:
        """The study names the folder of its storage (results/<study>/): the same safe-name rule as
        ``tune.study``, so ``--study ..`` or ``--study a/b`` cannot put it outside results/."""
        if self.study is not None:
            try:
                check_name(self.study, "a study name")
            except ValueError as exc:
                raise RecipeError(
                    f"{exc}; got {self.study!r}", source="command line", key="--study"
                ) from None


@dataclass
class TunePlan:
    options: TuneOptions
    loaded: LoadedRecipe
    tune: TuneConfig
    base: dict[str, Any]  # the recipe without matrix/seeds/tune: every trial starts from it
    space: Space
    seed: int  # the recipe's first: a trial's run on it is named trial=N, on another trial=N,seed=S

    @property
    def study_name(self) -> str:
        return self.options.study or self.tune.study or self.loaded.name

    @property
    def out_dir(self) -> Path:
        return Path(self.options.results_dir) / self.study_name

    @property
    def tracking_uri(self) -> str:
        return store.default_tracking_uri(
            self.options.results_dir, self.options.tracking_uri or self.loaded.recipe.tracking.uri
        )

    @property
    def epochs(self) -> int:
        return self.trial_body({}).train.epochs

    @property
    def tuning_seeds(self) -> list[int]:
        """The seeds that choose a configuration: every trial trains on the same ones in the same
        order, so trials pair up seed by seed."""
        return tuning_seeds(self.loaded.recipe.seeds, self.tune.seeds_per_trial)

    @property
    def recheck_seeds(self) -> list[int]:
        """The seeds that report it: fresh ones after every tuning seed, for the re-check of the top
        configurations (best.yaml records both, so ``bench run --overlay`` moves off them too)."""
        start = max(self.tuning_seeds) + 1
        return list(range(start, start + self.tune.recheck_seeds))

    def storage_spec(self) -> StorageSpec:
        return resolve_storage(self.options.storage, self.out_dir, self.options.workers)

    def trial_body(self, values: dict[str, Any]) -> RecipeBody:
        return _validate(
            RecipeBody, deep_merge(self.base, values, source=self.loaded.source), self.loaded.source
        )

    def trial_variant(self, values: dict[str, Any], number: int, seed: int) -> Variant:
        body = self.trial_body(values)
        resolved = body.model_dump(mode="json")
        group = f"trial={number}"
        name = group if seed == self.seed else f"{group},seed={seed}"
        return Variant(
            body=body, seed=seed, axes=dict(values), name=name, group=group,
            variant_id=stable_hash(values), run_key=stable_hash({"config": resolved, "seed": seed}, 16),
        )  # fmt: skip


def build_plan(options: TuneOptions, *, quiet: bool = False) -> TunePlan:
    """Load and validate the recipe and its search space; nothing is created yet."""
    loaded = load_recipe(options.recipe, options.overrides, options.overlays)
    source = loaded.source
    tune = loaded.recipe.tune
    if tune is None:
        raise RecipeError(
            "no tune: section; add one, e.g.\n  tune:\n    n_trials: 20\n    space:\n"
            "      train.optimizer.lr: {float: [1.0e-4, 1.0], log: true}",
            source=source,
            key="tune",
        )
    if len(loaded.variants) != 1 and loaded.raw.get("matrix"):
        raise RecipeError(
            f"bench tune studies one setup, but the matrix expands to {len(loaded.variants)} variants; "
            "remove matrix: or pin its axes with overrides (e.g. matrix.train.freeze=[0])",
            source=source,
            key="matrix",
        )
    notes: list[str] = []
    base = {k: copy.deepcopy(v) for k, v in loaded.raw.items() if k not in (*RUN_KEYS, "tune")}
    if not loaded.variants[0].body.data.val_size:
        base.setdefault("data", {})["val_size"] = tune.default_val_size
        notes.append(
            f"data.val_size is 0: carving {tune.default_val_size:.0%} of the training data as the "
            "validation split the study tunes on (set data.val_size to choose)"
        )
    seeds = loaded.recipe.seeds
    if len(seeds) > tune.seeds_per_trial:
        used = tuning_seeds(seeds, tune.seeds_per_trial)
        notes.append(f"the recipe lists {len(seeds)} seeds; trials train with {used} (tune.seeds_per_trial)")
    if loaded.recipe.init_seeds or loaded.recipe.data_seeds:
        notes.append(f"init_seeds/data_seeds are not used by a study: seed {seeds[0]} drives every stream")
    space = Space(tune.params())
    validate_space(base, space, source)
    if tune.sampler.name == "grid" and space.grid_size() < tune.n_trials:
        notes.append(f"the grid has {space.grid_size()} points: n_trials capped from {tune.n_trials}")
        tune = tune.model_copy(update={"n_trials": space.grid_size()})
    plan = TunePlan(options, loaded, tune, base, space, seeds[0])
    if not quiet:
        for note in notes:
            say(f"note: {note}")
    return plan
