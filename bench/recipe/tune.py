"""The ``tune:`` section of a recipe: its shape only. Part of the torch- and optuna-free recipe
leaf; sampler and pruner options are bound to the optuna classes by ``bench.validate.recipe``."""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt, field_validator, model_validator

from bench.recipe.base import ComponentConfig, Strict, check_name
from bench.recipe.matrix import canonical

SPACE_FORMS = (
    "{float: [low, high], log: bool, step: number}, {int: [low, high], log: bool, step: int} "
    "or {categorical: [choice, ...]}"
)
RUN_KEYS = ("matrix", "seeds", "init_seeds", "data_seeds")  # top-level keys that are not a variant's setup
RESERVED_KEYS = (*RUN_KEYS, "name", "tune", "description", "baseline", "target_acc", "tracking")


class OutsideSpace(ValueError):
    """A value read back from a study's storage that this recipe's search space does not declare."""


@dataclass(frozen=True)
class ParamSpec:
    """One search-space entry, parsed: kind is float, int or categorical."""

    key: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    def accept(self, value: Any) -> Any:
        """``value`` as read back from Optuna, as a recipe value; ``OutsideSpace`` unless it is
        one this entry declares (a categorical label, or a number within [low, high])."""
        if self.kind == "categorical":
            labels = [choice_label(c) for c in self.choices]
            if value not in labels or isinstance(value, bool) != isinstance(
                labels[labels.index(value)], bool
            ):
                raise OutsideSpace(f"{self.key}={value!r} is not one of the declared choices {labels}")
            return copy.deepcopy(self.choices[labels.index(value)])
        if not _is_number(value) or (self.kind == "int" and value != int(value)):
            raise OutsideSpace(f"{self.key}={value!r} is not a {self.kind}")
        if not self.low - 1e-12 * abs(self.low) <= value <= self.high + 1e-12 * abs(self.high):
            raise OutsideSpace(f"{self.key}={value!r} is outside the declared [{self.low}, {self.high}]")
        return int(value) if self.kind == "int" else float(value)

    def bounds(self) -> list[Any]:
        """The values validated through the recipe schema before a study starts."""
        return list(self.choices) if self.kind == "categorical" else [self.low, self.high]


def _is_number(value: Any, integer: bool = False) -> bool:
    if isinstance(value, bool):  # a bool is an int to Python, never a number in a recipe
        return False
    return isinstance(value, int) if integer else isinstance(value, int | float) and math.isfinite(value)


def parse_param(key: str, entry: Any) -> ParamSpec:
    """Parse one ``space`` entry; ValueError names the key and the allowed forms."""

    def bad(problem: str) -> ValueError:
        return ValueError(f"'{key}': {problem}; allowed forms: {SPACE_FORMS}")

    if not all(key.split(".")):
        raise ValueError(f"'{key}': a search-space key must be a dotted recipe key like train.optimizer.lr")
    if key.split(".")[0] in RESERVED_KEYS or key.startswith("data.name"):
        raise ValueError(f"'{key}': this key cannot be tuned (it names or describes the study)")
    if not isinstance(entry, dict):
        raise bad(f"got {entry!r}")
    kinds = [k for k in ("float", "int", "categorical") if k in entry]
    if len(kinds) != 1:
        raise bad("give exactly one of float, int, categorical" if kinds else "no float/int/categorical")
    kind = kinds[0]
    extra = set(entry) - {kind, "log", "step"}
    if extra:
        raise bad(f"unknown option(s) {', '.join(sorted(map(str, extra)))}")
    if kind == "categorical":
        if set(entry) != {"categorical"}:
            raise bad("categorical takes no log/step")
        choices = entry["categorical"]
        if not isinstance(choices, list) or not choices:
            raise bad("categorical needs a non-empty list of choices")
        labels = [choice_label(c) for c in choices]
        if len(set(map(repr, labels))) != len(labels):
            raise bad("categorical choices must be distinct")
        return ParamSpec(key, "categorical", choices=tuple(choices))
    integer = kind == "int"
    pair = entry[kind]
    if not (isinstance(pair, list | tuple) and len(pair) == 2 and all(_is_number(v, integer) for v in pair)):
        raise bad(f"{kind} needs [low, high] with two {'integers' if integer else 'numbers'}, got {pair!r}")
    low, high = pair if integer else (float(pair[0]), float(pair[1]))
    if low > high:
        raise bad(f"low ({low}) must be <= high ({high})")
    log = entry.get("log", False)
    if not isinstance(log, bool):
        raise bad(f"log must be true or false, got {log!r}")
    step = entry.get("step")
    if step is not None:
        if not _is_number(step, integer) or step <= 0:
            raise bad(f"step must be a positive {'integer' if integer else 'number'}, got {step!r}")
        if log:
            raise bad("log and step cannot be combined")
    if log and low <= 0:
        raise bad(f"a log scale needs low > 0, got {low}")
    return ParamSpec(key, kind, low=low, high=high, log=log, step=step)


def choice_label(choice: Any) -> Any:
    """What Optuna records for a categorical choice: the value itself when it is a scalar,
    else its ``name`` (a component mapping like ``{name: cosine, ...}``) or its JSON."""
    if choice is None or isinstance(choice, bool | int | float | str):
        return choice
    if isinstance(choice, dict) and isinstance(choice.get("name"), str) and len(choice) == 1:
        return choice["name"]
    return canonical(choice)


class ObjectiveConfig(Strict):
    metric: str = Field("val/acc", description="per-epoch metric from the engine's record")
    direction: Literal["maximize", "minimize"] = "maximize"
    reduce: Literal["last", "best"] = Field("last", description="the trial's value: last or best epoch")

    @field_validator("metric")
    @classmethod
    def _no_test_peeking(cls, metric: str) -> str:
        if metric.startswith("test/"):
            raise ValueError(
                "tuning must not peek at the test set: use val/acc (a validation split carved from "
                "train with data.val_size); bench tune reports the best trial's test accuracy separately"
            )
        if not metric.startswith(("val/", "train/")):
            raise ValueError(
                f"metric must be a per-epoch val/* or train/* metric, e.g. val/acc; got '{metric}'"
            )
        return metric


class SamplerConfig(ComponentConfig):
    """Sampler name and seed; other keys go to the optuna sampler class (e.g. n_startup_trials)."""

    name: Literal["tpe", "random", "grid", "cmaes"] = "tpe"
    seed: int | None = Field(0, description="sampler seed (worker k of a study adds k)")


class PrunerConfig(ComponentConfig):
    """Pruner name; other keys go to the pruner class (e.g. n_startup_trials, n_warmup_steps).
    ``auto``: a pilot of unpruned trials, then Kendall tau per epoch picks successive halving, median or none
    (bench/tune/fidelity.py). ``wilcoxon``: across the seeds of ``seeds_per_trial`` (bench/tune/pruners.py)."""

    name: Literal["median", "hyperband", "none", "auto", "wilcoxon"] = "median"


class LivenessConfig(Strict):
    """How workers prove they are alive: Optuna's heartbeat in the study's storage (so every command
    and machine sharing it agrees); a trial without one for ``grace_period`` seconds is failed and
    retried with the same parameters."""

    heartbeat_interval: PositiveInt = Field(30, description="seconds between a running trial's heartbeats")
    grace_period: PositiveInt = Field(120, description="seconds without a heartbeat before a trial is dead")

    @model_validator(mode="after")
    def _grace_covers_beats(self) -> LivenessConfig:
        if self.grace_period <= self.heartbeat_interval:
            raise ValueError(
                f"grace_period ({self.grace_period}) must exceed heartbeat_interval ({self.heartbeat_interval})"
            )
        return self


class TuneConfig(Strict):
    """``tune:`` in a recipe: what ``bench tune`` searches, how, and for how long."""

    study: str | None = Field(None, description="study name; default the recipe name (results/<study>/)")
    n_trials: PositiveInt = Field(20, description="trials in the whole study, all workers together")
    timeout: PositiveFloat | None = Field(None, description="seconds per command; no new trial starts after")
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    pruner: PrunerConfig = Field(default_factory=PrunerConfig)
    default_val_size: float = Field(
        0.1, gt=0.0, lt=1.0, description="validation fraction used when data.val_size is 0"
    )
    liveness: LivenessConfig = Field(default_factory=LivenessConfig)
    seeds_per_trial: PositiveInt = Field(
        1, description="seeds each trial's configuration trains on; the objective is their mean"
    )
    recheck_top: NonNegativeInt = Field(
        3, description="configurations re-run on fresh seeds after the study (0: none)"
    )
    recheck_seeds: PositiveInt = Field(3, description="fresh seeds per re-checked configuration")
    space: dict[str, Any] = Field(description=f"dotted recipe key -> {SPACE_FORMS}")

    @field_validator("study")
    @classmethod
    def _slug(cls, name: str | None) -> str | None:
        return None if name is None else check_name(name, "study")

    @field_validator("space")
    @classmethod
    def _space(cls, space: dict[str, Any]) -> dict[str, Any]:
        if not space:
            raise ValueError(f"the search space is empty; give dotted keys mapped to {SPACE_FORMS}")
        for key, entry in space.items():
            parse_param(key, entry)
        return space

    @model_validator(mode="after")
    def _grid_fits(self) -> TuneConfig:
        loose = [spec.key for spec in self.params() if spec.kind == "float" and spec.step is None]
        if self.sampler.name == "grid" and loose:
            raise ValueError(
                f"the grid sampler needs discrete values: give '{loose[0]}' a step, or make it int or categorical"
            )
        return self

    @model_validator(mode="after")
    def _pruner_fits_seeds(self) -> TuneConfig:
        """Several seeds make a trial's steps its seeds, not its epochs: only a pruner over seeds fits."""
        name = self.pruner.name
        if self.seeds_per_trial > 1 and name in ("median", "hyperband", "auto"):
            if "name" not in self.pruner.model_fields_set:
                self.pruner = PrunerConfig(name="wilcoxon", **self.pruner.kwargs)
            else:
                raise ValueError(
                    f"seeds_per_trial {self.seeds_per_trial} prunes across seeds, not epochs: "
                    f"use pruner wilcoxon or none (not {name})"
                )
        if self.seeds_per_trial == 1 and name == "wilcoxon":
            raise ValueError("the wilcoxon pruner compares seeds: set seeds_per_trial to 2 or more")
        return self

    def params(self) -> list[ParamSpec]:
        return [parse_param(k, v) for k, v in self.space.items()]


TUNED_KEY = "tuned"  # best.yaml's record of how its keys were chosen; stripped from an overlay


def shift_seeds(seeds: list[int], tuned_on: list[int]) -> list[int]:
    """``seeds`` with each one that tuned the configuration replaced by a fresh one (in order)."""
    fresh = itertools.count(max([*seeds, *tuned_on]) + 1)
    return [next(fresh) if s in tuned_on else s for s in seeds]
