"""The search space: validated through the recipe schema at its bounds before a study starts,
then sampled per trial. Optuna records each parameter under its dotted recipe key."""

from __future__ import annotations

from typing import Any

from bench.errors import RecipeError
from bench.recipe.dotted import deep_merge
from bench.recipe.schema import RecipeBody
from bench.recipe.tune import OutsideSpace, ParamSpec, choice_label
from bench.validate.recipe import validate_config as _validate


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class Space:
    def __init__(self, params: list[ParamSpec]):
        self.params = params

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
        size = 1
        for values in self.grid().values():
            size *= len(values)
        return size

    @staticmethod
    def describe(values: dict[str, Any]) -> str:
        parts = []
        for key, value in values.items():
            short = key.rsplit(".", 1)[-1] if key.count(".") else key
            shown = value.get("name", value) if isinstance(value, dict) else value
            parts.append(f"{short}={_fmt(shown)}")
        return " ".join(parts)


def trial_config(base: dict[str, Any], values: dict[str, Any], source: str) -> dict[str, Any]:
    merged = base
    for key, value in values.items():
        merged = deep_merge(merged, {key: value}, source=source)
    return merged


def validate_space(base: dict[str, Any], space: Space, source: str) -> None:
    """Build a trial config at every bound and categorical choice (others at the recipe's values,
    then all lows and all highs together) and validate it through the recipe schema, so a bad key
    or range fails here, naming ``tune.space.<key>``, before any trial trains."""
    for p in space.params:
        for value in p.bounds():
            where = f"tune.space.{p.key}"
            try:
                _validate(RecipeBody, trial_config(base, {p.key: value}, source), source)
            except RecipeError as exc:
                inner = f"{exc.key}: " if exc.key and exc.key != p.key else ""
                raise RecipeError(
                    f"the value {value!r} makes an invalid recipe: {inner}{exc.detail}",
                    source=source,
                    key=where,
                ) from None
    numeric = [p for p in space.params if p.kind != "categorical"]
    for side in ("low", "high"):
        values = {p.key: getattr(p, side) for p in numeric}
        if len(values) > 1:
            try:
                _validate(RecipeBody, trial_config(base, values, source), source)
            except RecipeError as exc:
                raise RecipeError(
                    f"all parameters at their {side} bounds make an invalid recipe: "
                    f"{exc.key + ': ' if exc.key else ''}{exc.detail}",
                    source=source,
                    key="tune.space",
                ) from None
