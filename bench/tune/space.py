"""The search space: validated through the recipe schema at its bounds before a study starts,
then sampled per trial. Optuna records each parameter under its dotted recipe key."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bench.errors import RecipeError
from bench.recipe.dotted import deep_merge
from bench.recipe.schema import RecipeBody
from bench.recipe.tune import OutsideSpace, ParamSpec, choice_label
from bench.validate.recipe import validate_config as _validate


@dataclass
class Space:
    params: list[ParamSpec]

    def __len__(self) -> int:
        return len(self.params)

    @property
    def keys(self) -> list[str]:
        return [p.key for p in self.params]

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Recipe values for ``trial`` (categorical choices mapped back from their labels)."""
        values: dict[str, Any] = {}
        for p in self.params:
            if p.kind == "float":
                values[p.key] = trial.suggest_float(p.key, p.low, p.high, log=p.log, step=p.step)
            elif p.kind == "int":
                values[p.key] = trial.suggest_int(p.key, p.low, p.high, log=p.log, step=p.step or 1)
            else:
                values[p.key] = trial.suggest_categorical(p.key, [choice_label(c) for c in p.choices])
        return self.from_optuna(values)  # a re-queued trial's fixed values are checked here too

    def from_optuna(self, params: dict[str, Any]) -> dict[str, Any]:
        """Optuna's recorded params (labels for categoricals) -> recipe values. A shared storage
        may hold trials written by another recipe or by hand: only values this recipe's space
        declares are accepted (else ``OutsideSpace``), so nothing undeclared, e.g. an import path
        as a categorical, reaches a trial or ``best.yaml``."""
        out: dict[str, Any] = {}
        for p in self.params:
            if p.key not in params:
                raise OutsideSpace(f"{p.key} is missing")
            out[p.key] = p.accept(params[p.key])
        extra = sorted(set(params) - set(self.keys))
        if extra:
            raise OutsideSpace(f"{', '.join(extra)} not in this recipe's search space")
        return out

    def grid(self) -> dict[str, list[Any]]:
        """Every value of a discrete space, for the grid sampler."""
        out: dict[str, list[Any]] = {}
        for p in self.params:
            if p.kind == "categorical":
                out[p.key] = [choice_label(c) for c in p.choices]
            elif p.kind == "int":
                out[p.key] = list(range(p.low, p.high + 1, p.step or 1))
            else:
                n = int((p.high - p.low) / p.step + 1e-9)
                out[p.key] = [round(p.low + i * p.step, 12) for i in range(n + 1)]
        return out

    def grid_size(self) -> int:
        return math.prod(map(len, self.grid().values()))

    @staticmethod
    def describe(values: dict[str, Any]) -> str:
        """``key=value`` by the last part of each dotted key; a component by its name."""
        shown = [
            (k.rsplit(".", 1)[-1], v.get("name", v) if isinstance(v, dict) else v) for k, v in values.items()
        ]
        return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown)


def validate_space(base: dict[str, Any], space: Space, source: str) -> None:
    """Build a trial config at every bound and categorical choice (others at the recipe's values,
    then all lows and all highs together) and validate it through the recipe schema, so a bad key
    or range fails here, naming ``tune.space.<key>``, before any trial trains."""
    numeric = [p for p in space.params if p.kind != "categorical"]
    checks = [
        ({p.key: v}, f"tune.space.{p.key}", f"the value {v!r} makes", p.key)
        for p in space.params
        for v in p.bounds()
    ]
    checks += [({p.key: getattr(p, side) for p in numeric}, "tune.space", f"all parameters at their {side} bounds make", "")
               for side in ("low", "high") if len(numeric) > 1]  # fmt: skip
    for values, where, what, own in checks:
        try:
            _validate(RecipeBody, deep_merge(base, values, source=source), source)
        except RecipeError as exc:
            inner = f"{exc.key}: " if exc.key and exc.key != own else ""
            raise RecipeError(
                f"{what} an invalid recipe: {inner}{exc.detail}", source=source, key=where
            ) from None
