"""Load a recipe file, apply overlays and ``key=value`` overrides, expand the matrix, and
validate every variant's shape up front: a bad variant fails before any variant trains.
Component names and arguments are checked by ``bench.validate.recipe`` (this package stays torch-free)."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from bench.errors import RecipeError
from bench.recipe.dotted import deep_merge, delete_dotted, get_dotted, set_dotted
from bench.recipe.matrix import (
    RESERVED,
    axis_label,
    axis_value_labels,
    canonical,
    expand_axes,
    stable_hash,
    value_label,
    variant_name,
)
from bench.recipe.schema import Recipe, RecipeBody
from bench.recipe.tune import RUN_KEYS, TUNED_KEY, shift_seeds
from bench.recipe.yaml_loader import load_yaml_file, parse_scalar


@dataclass(frozen=True)
class Variant:
    """One unit of work: a fully resolved setup and its seed (and split-off streams, if any)."""

    body: RecipeBody
    seed: int
    axes: dict[str, Any]
    name: str  # readable, with seed: "scheduler=onecycle,freeze=2,seed=0"
    group: str  # the same without the seed: what reports aggregate over
    variant_id: str  # stable hash of the varied values (shared by all seeds)
    run_key: str  # hash of the fully resolved config and seed(s): a run's identity
    # Every matrix axis -> this variant's value label, including axes an ``include`` entry
    # leaves at the base value (for tags, tables and per-axis reports).
    axis_values: dict[str, str] = field(default_factory=dict)
    # Streams split off ``seed`` (recipe ``init_seeds`` / ``data_seeds``); None: the stream follows seed.
    init_seed: int | None = None
    data_seed: int | None = None

    @property
    def init_stream(self) -> int:
        """Seed of model initialisation and the global RNGs (dropout)."""
        return self.seed if self.init_seed is None else self.init_seed

    @property
    def data_stream(self) -> int:
        """Seed of data order and augmentation."""
        return self.seed if self.data_seed is None else self.data_seed

    @property
    def config(self) -> dict[str, Any]:
        return self.body.model_dump(mode="json")

    def with_train(self, **updates: Any) -> Variant:
        """The same variant with ``train`` keys replaced (e.g. ``bench plan`` without freezing)."""
        train = self.body.train.model_copy(update=updates)
        return dataclasses.replace(self, body=self.body.model_copy(update={"train": train}))


@dataclass
class LoadedRecipe:
    recipe: Recipe
    source: str
    raw: dict[str, Any]
    variants: list[Variant] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what overrides did to the matrix (for --dry-run)
    # as given on the command line: the "run again" command repeats them
    overrides: tuple[str, ...] = ()
    overlays: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.recipe.name

    @property
    def experiment(self) -> str:
        """The MLflow experiment its runs (and its study's) are recorded in: the recipe's
        ``tracking.experiment``, else its name. One rule for run, tune, report and ui."""
        return self.recipe.tracking.experiment or self.recipe.name


def parse_override(text: str) -> tuple[str, Any, bool]:
    """``a.b=1`` -> ("a.b", 1, False); ``~a.b`` -> ("a.b", None, True)."""
    if text.startswith("~"):
        return text[1:], None, True
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise RecipeError(
            "an override must look like key.path=value or ~key.path", source="<override>", key=text
        )
    return key.strip(), parse_scalar(value), False


def apply_overrides(
    raw: dict[str, Any], overrides: list[str] | tuple[str, ...], notes: list[str] | None = None
) -> dict[str, Any]:
    """Apply ``key=value`` overrides to every variant. ``notes`` collects what an override did to
    the matrix (``--dry-run`` prints them): an override is never dropped by a matrix value."""
    notes = [] if notes is None else notes
    for text in overrides:
        key, value, delete = parse_override(text)
        if key.startswith("matrix."):
            matrix = raw.setdefault("matrix", {})
            axis = key.removeprefix("matrix.")
            if delete:
                matrix.pop(axis, None)
            else:
                matrix[axis] = value
                _drop_excludes_off_axis(matrix, axis, notes)
        elif delete:
            delete_dotted(raw, key, source="<override>")
        else:
            set_dotted(raw, key, value, source="<override>")
            if isinstance(raw.get("matrix"), dict):
                _override_matrix(raw["matrix"], key, value, text, notes)
    return raw


def _drop_excludes_off_axis(matrix: dict[str, Any], axis: str, notes: list[str]) -> None:
    """An axis given new values by ``matrix.<axis>=[...]``: exclude entries naming a value it no
    longer has can match nothing, and go (the axis's other cells keep theirs)."""
    excludes, values = matrix.get("exclude"), matrix.get(axis)
    if not isinstance(excludes, list) or not isinstance(values, list):
        return
    have = {canonical(v) for v in values}
    kept = [e for e in excludes if not isinstance(e, dict) or axis not in e or canonical(e[axis]) in have]
    if len(kept) < len(excludes):
        matrix["exclude"] = kept
        notes.append(
            f"override matrix.{axis} drops {len(excludes) - len(kept)} matrix.exclude entry(ies) naming "
            "a value it no longer has"
        )


def _override_matrix(matrix: dict[str, Any], key: str, value: Any, text: str, notes: list[str]) -> None:
    """Make an override of ``key`` hold in every variant, whatever the matrix sets: pinning an axis
    drops it (and that key from ``include`` entries); a key inside an axis's mapping values (an
    override of ``train.scheduler.warmup_epochs`` with a ``train.scheduler`` axis) is merged into
    each value. A value it cannot merge into (``null``, a string) is refused, naming the axis."""
    if key in matrix and key not in RESERVED:
        matrix.pop(key)
        notes.append(f"override {text} pins matrix axis {key}: the axis is dropped")
    includes = matrix.get("include")
    if isinstance(includes, list):
        kept = []
        for entry in includes:
            if isinstance(entry, dict) and key in entry:
                entry = {k: v for k, v in entry.items() if k != key}
                notes.append(f"override {text} replaces {key} in a matrix.include entry")
                if not entry:
                    continue
            kept.append(entry)
        matrix["include"] = kept
    excludes = matrix.get("exclude")
    if isinstance(excludes, list):  # a pinned key either matches a pattern's value or never will
        matrix["exclude"] = [
            {k: v for k, v in e.items() if k != key}
            for e in excludes
            if not (isinstance(e, dict) and key in e) or canonical(e[key]) == canonical(value)
        ]
    for axis in [k for k in matrix if k not in RESERVED and key.startswith(k + ".")]:
        if isinstance(matrix[axis], list):
            matrix[axis] = [_merge_into(v, axis, key, value, text) for v in matrix[axis]]
            notes.append(f"override {text} applied to every value of matrix axis {axis}")
            for entry in matrix.get("exclude") or []:  # so that an exclude entry still names its cell
                if isinstance(entry, dict) and isinstance(entry.get(axis), dict):
                    entry[axis] = _merge_into(entry[axis], axis, key, value, text)
    for entry in includes if isinstance(includes, list) else []:
        for axis in [k for k in entry if isinstance(k, str) and key.startswith(k + ".")]:
            entry[axis] = _merge_into(entry[axis], axis, key, value, text)
            notes.append(f"override {text} applied to the matrix.include entry setting {axis}")


def _merge_into(axis_value: Any, axis: str, key: str, value: Any, text: str) -> Any:
    if not isinstance(axis_value, dict):
        raise RecipeError(
            f"matrix axis {axis} has the value {axis_value!r}, not a mapping, so the override cannot "
            f"apply to every variant; give the axis's values with matrix.{axis}=[...] instead, or "
            f"set {key} in the recipe's matrix",
            source="<override>",
            key=text,
        )
    merged = copy.deepcopy(axis_value)
    set_dotted(merged, key[len(axis) + 1 :], value, source="<override>")
    return merged


def _model_at(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> type[BaseModel] | None:
    for part in loc:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return None
        annotation = model.model_fields[part].annotation
        model = next(
            (
                a
                for a in (annotation, *typing.get_args(annotation))
                if isinstance(a, type) and issubclass(a, BaseModel)
            ),
            None,
        )
    return model


def _validate(model: type[BaseModel], data: dict[str, Any], source: str, where: str = "") -> Any:
    """``model.model_validate``, its errors turned into one message naming the dotted key and what
    is allowed."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
    lines = []
    for err in errors:
        loc = tuple(
            p
            for p in err["loc"]
            if not (isinstance(p, str) and p.startswith(("function-", "list[", "int", "str")))
        )
        key = ".".join(str(p) for p in loc) or "<recipe>"
        msg = err["msg"].removeprefix("Value error, ")
        named = re.match(r"([a-z_]+(?:\.[a-z_]+)+): ", msg)
        if named and not loc:  # a cross-field check names its key itself
            key, msg = named.group(1), msg[named.end() :]
        if err["type"] == "extra_forbidden":
            parent = _model_at(model, loc[:-1])
            allowed = ", ".join(parent.model_fields) if parent else "see the schema"
            msg = f"unknown key; allowed keys here: {allowed}"
        elif err["type"] == "list_type":  # `seeds=3` meant three seeds; pydantic says "a valid list"
            example = "[0,1,2] for three seeds" if key.endswith("seeds") else "[a,b]"
            msg = f"must be a list, e.g. {key}={example} (a YAML list in the file); got {err['input']!r}"
        lines.append(f"{key}: {msg}")
    lines = list(dict.fromkeys(lines))  # each member of a union (list | None) reports the same key
    prefix = f"{where}: " if where else ""
    if len(lines) == 1:
        key, _, msg = lines[0].partition(": ")
        raise RecipeError(prefix + msg, source=source, key=key)
    raise RecipeError(prefix + f"{len(lines)} problems:\n  " + "\n  ".join(lines), source=source)


def load_raw(
    path: str | Path, overlays: list[str] | tuple[str, ...] = (), overrides=(), notes: list[str] | None = None
) -> dict[str, Any]:
    raw = load_yaml_file(path)
    if not isinstance(raw, dict):
        raise RecipeError(
            f"a recipe must be a mapping of keys to values, got {type(raw).__name__}", source=str(path)
        )
    tuned_on: list[int] = []
    for overlay in overlays:
        extra = load_yaml_file(overlay)
        if not isinstance(extra, dict):
            raise RecipeError("an overlay must be a mapping", source=str(overlay))
        record = extra.pop(TUNED_KEY, None)  # which seeds chose the overlay's values (bench tune's best.yaml)
        if record is not None:
            seeds = record.get("tuned_on_seeds") if isinstance(record, dict) else None
            if not isinstance(seeds, list) or not all(type(s) is int for s in seeds):
                raise RecipeError(
                    "tuned.tuned_on_seeds must be a list of integer seeds", source=str(overlay), key="tuned"
                )
            tuned_on += seeds
        raw = deep_merge(raw, extra, source=str(overlay))
    raw = apply_overrides(raw, list(overrides), notes)
    if tuned_on:
        seeds = raw.get("seeds", [0])
        moved = shift_seeds(seeds, tuned_on) if isinstance(seeds, list) else seeds
        if moved != seeds:
            import sys

            print(f"note: seeds {seeds} -> {moved}: the overlay's configuration was tuned on seeds "
                  f"{sorted(set(tuned_on))}, which never report it", file=sys.stderr, flush=True)  # fmt: skip
            raw = {**raw, "seeds": moved}
    return raw


def load_recipe(
    path: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    overlays: list[str] | tuple[str, ...] = (),
) -> LoadedRecipe:
    """Read, resolve and validate a recipe and every variant of its matrix."""
    source = str(path)
    notes: list[str] = []
    raw = load_raw(path, overlays, overrides, notes)
    recipe = _validate(Recipe, raw, source)
    loaded = LoadedRecipe(recipe=recipe, source=source, raw=raw, notes=notes, overrides=tuple(overrides),
                          overlays=tuple(str(o) for o in overlays))  # fmt: skip
    base = {k: v for k, v in raw.items() if k not in RUN_KEYS}
    combos, all_keys, labels = _expand(raw, source)
    runs = list(itertools.product(recipe.seeds, recipe.init_seeds or [None], recipe.data_seeds or [None]))
    for axes in combos:
        merged = deep_merge(base, axes, source=source)
        group = variant_name(axes, None, all_keys, labels)
        body = _validate(RecipeBody, merged, source, where=f"variant {group}")
        resolved_tree = body.model_dump(mode="json")
        axis_values = {
            axis_label(key, all_keys): (labels[key].get(canonical(axes[key])) if key in axes else None)
            or value_label(axes[key] if key in axes else get_dotted(resolved_tree, key))
            for key in all_keys
        }
        for seed, init, data in runs:
            # a stream equal to its seed follows the seed (None), so a run is named and keyed by what it does
            streams = {k: v for k, v in (("init_seed", init), ("data_seed", data)) if v not in (None, seed)}
            name = ",".join(
                [variant_name(axes, seed, all_keys, labels), *(f"{k}={v}" for k, v in streams.items())]
            )
            loaded.variants.append(Variant(
                body=body, seed=seed, axes=axes, name=name, group=group, variant_id=stable_hash(axes),
                # without split streams the key is what it always was: old results stay valid
                run_key=stable_hash({"config": resolved_tree, "seed": seed, **streams}, 16),
                axis_values=axis_values, **streams,
            ))  # fmt: skip
    _check_baseline(loaded, path, overlays, overrides)
    return loaded


def _expand(raw: dict[str, Any], source: str) -> tuple[list[dict[str, Any]], list[str], dict[str, Any]]:
    """The matrix's axis assignments, every axis key, and each axis's value labels."""
    combos = expand_axes(raw.get("matrix") or {}, source=source)
    all_keys = list(dict.fromkeys(k for c in combos for k in c))
    labels = {key: axis_value_labels([c[key] for c in combos if key in c]) for key in all_keys}
    return combos, all_keys, labels


def _check_baseline(loaded: LoadedRecipe, path: str | Path, overlays: Any, overrides: Any) -> None:
    """A ``baseline`` naming no variant (a typo) would leave every comparison without its reference:
    refuse it, listing the variants. When overrides reshape the matrix (pin an axis), a baseline
    that the file's own matrix has stands: reports then compare against the first variant."""
    wanted = loaded.recipe.baseline
    groups = list(dict.fromkeys(v.group for v in loaded.variants))
    if wanted is None or wanted in groups:
        return
    if overrides and all(parse_override(o)[0] != "baseline" for o in overrides):
        file_raw = load_raw(path, overlays)
        combos, all_keys, labels = _expand(file_raw, loaded.source)
        if wanted in {variant_name(c, None, all_keys, labels) for c in combos}:
            return
    raise RecipeError(
        f"{wanted!r} is not one of the recipe's variants (name them without the seed); variants: "
        + ", ".join(groups),
        source=loaded.source,
        key="baseline",
    )
