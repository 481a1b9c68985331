"""What a variant changes against the baseline, key by key, in its resolved config (defaults
applied). Why: a short label such as ``optimizer=adamw`` can stand for a bundle (learning rate,
weight decay, per-layer LRs, momentum dropped), and a comparison is only read right when the whole
bundle is known. Plain mappings in, so ``bench run --dry-run`` (``Variant.config``) and
``bench report`` (the params MLflow recorded, through ``unflatten``) share one rule; torch-free."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bench.recipe.dotted import get_dotted
from bench.recipe.matrix import axis_label, canonical, label_parts


class _Unset:
    """A key one side does not have (e.g. ``momentum`` after ``optimizer=adamw`` replaced the block)."""

    def __repr__(self) -> str:
        return "unset"


UNSET: Any = _Unset()
Changes = dict[str, tuple[Any, Any]]  # dotted key -> (baseline value, variant value)


def config_changes(baseline: Mapping[str, Any], variant: Mapping[str, Any], prefix: str = "") -> Changes:
    """Every leaf key whose value differs, as dotted keys -> (baseline value, variant value), in the
    baseline's key order, then keys only the variant has; ``UNSET`` for a side without the key. A
    block on one side and a scalar (``None``) on the other is one key: ``train.swa None->{...}``."""
    out: Changes = {}
    for key in list(baseline) + [k for k in variant if k not in baseline]:
        old, new = baseline.get(key, UNSET), variant.get(key, UNSET)
        dotted = f"{prefix}{key}"
        if isinstance(old, Mapping) and isinstance(new, Mapping) and (old or new):
            out.update(config_changes(old, new, dotted + "."))
        elif old is UNSET or new is UNSET or canonical(old) != canonical(new):
            out[dotted] = (old, new)
    return out


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted keys (MLflow params, as ``bench.recipe.dotted.flatten`` wrote them) back to a tree."""
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:  # flatten never writes a key both as a leaf and as a parent
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[leaf] = value
    return tree


def value_text(value: Any, limit: int | None = None) -> str:
    """``str()`` of a value, as MLflow stores params (so dry runs and reports read alike); mappings
    as ``{k: v}``; ``limit`` cuts long values (a weights path) for one-line output."""
    if isinstance(value, Mapping):
        text = "{" + ", ".join(f"{k}: {value_text(v)}" for k, v in value.items()) + "}"
    else:
        text = str(value)  # UNSET reads "unset"
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def change_text(key: str, old: Any, new: Any, limit: int | None = None) -> str:
    return f"{key} {value_text(old, limit)}->{value_text(new, limit)}"


def compact(changes: Changes, width: int | None = None, detail: str = "values") -> str:
    """One line, keys sharing a parent written once: ``detail`` "values"
    (``train.optimizer.{name sgd->adamw, lr 0.05->0.002}``), "names" (``train.optimizer.{name, lr}``)
    or "counts" (``train.optimizer.{7 keys}``). With ``width``, long values are cut, and with
    ``detail="fit"`` the most detailed form that fits is used; what still does not fit is dropped
    from the end, whole parents at a time, and counted."""
    if detail == "fit":
        fits = [d for d in ("values", "names") if width is None or len(compact(changes, None, d)) <= width]
        return compact(changes, width, (fits or ["counts"])[0])
    groups: dict[str, list[str]] = {}
    for key, (old, new) in changes.items():
        parent, _, leaf = key.rpartition(".")
        text = change_text(leaf, old, new, 40 if width else None) if detail == "values" else leaf
        groups.setdefault(parent, []).append(text)
    text, shown = "", 0
    for parent, items in groups.items():
        if len(items) == 1:
            part = f"{parent}.{items[0]}" if parent else items[0]
        else:
            part = f"{parent}.{{{keys_text(len(items)) if detail == 'counts' else ', '.join(items)}}}"
        candidate, left = f"{text}, {part}" if text else part, len(changes) - shown - len(items)
        if text and width is not None and len(candidate) + (len(f", … +{left} more") if left else 0) > width:
            break
        text, shown = candidate, shown + len(items)
    hidden = len(changes) - shown
    return text + (f", … +{hidden} more" if hidden else "")


def keys_text(n: int) -> str:
    return f"{n} key" if n == 1 else f"{n} keys"


@dataclass(frozen=True)
class AxisValueChange:
    """What one axis value changes against the baseline's value on that axis: the keys that differ
    between a variant with this value and the variant equal to it but for the baseline's value on
    this axis (nearest the baseline when several pairs exist). ``changes`` is None when no such
    pair exists (an ``exclude`` removed it, or its runs were not recorded)."""

    axis: str  # the axis label, e.g. "optimizer"
    value: str  # its value label, e.g. "adamw"
    reference: str  # the baseline's value on this axis, e.g. "sgd"
    key: str | None  # the dotted axis key, e.g. "train.optimizer" (None: not found)
    named: tuple[str, ...]  # the keys the label names (see ``named_keys``)
    changes: Changes | None
    compared: tuple[str, str] | None  # (variant, reference variant) the changes come from

    @property
    def n_keys(self) -> int | None:
        return None if self.changes is None else len(self.changes)

    @property
    def beyond(self) -> Changes:
        """The changed keys outside the one key the label names (a lone change counts as named
        when the axis key could not be found)."""
        changes, key = self.changes or {}, self.key
        if key is None:
            return {} if len(changes) == 1 else dict(changes)
        if self.named:  # a component block: only what the label names
            return {k: v for k, v in changes.items() if k not in self.named}
        # a scalar, or a block without a name switched on or off: the whole axis key
        return {k: v for k, v in changes.items() if k != key and not k.startswith(key + ".")}

    @property
    def bundle(self) -> bool | None:
        return None if self.changes is None else bool(self.beyond)


def named_keys(axis_key: str, value_label: str, *configs: Mapping[str, Any]) -> tuple[str, ...]:
    """The keys a value label names. A component block labelled by its ``name`` (``adamw``) names
    ``<axis>.name`` (plus the block itself, and keys a disambiguated label spells out:
    ``adamw(lr:0.01)`` names ``<axis>.lr``). Otherwise () meaning the whole axis key: a scalar
    (``freeze=2``) or a block without a name switched on or off (``swa=on``: its settings are it)."""
    if not any(
        isinstance(get_dotted(c, axis_key), Mapping) and "name" in get_dotted(c, axis_key) for c in configs
    ):
        return ()
    spelled = re.search(r"\(([^()]*)\)$", value_label)
    extra = [part.partition(":")[0] for part in spelled.group(1).split(";")] if spelled else []
    return (axis_key, f"{axis_key}.name", *(f"{axis_key}.{k}" for k in extra if k))


def infer_axis_key(label: str, changes: Changes) -> str | None:
    """The dotted key an axis label stands for (``scheduler`` -> ``train.scheduler``), found among
    the prefixes of the changed keys with ``bench.recipe.matrix.axis_label``'s rule; the shortest
    wins. For records that keep only labels (MLflow's ``axis.*`` tags)."""
    n = label.count(".") + 1
    prefixes = {".".join(key.split(".")[:i]) for key in changes for i in range(1, key.count(".") + 2)}
    hits = [prefix for prefix in prefixes if ".".join(label_parts(prefix)[-n:]) == label]
    return min(hits, key=lambda k: (k.count("."), k), default=None)


def axis_value_changes(
    configs: Mapping[str, Mapping[str, Any]],
    axis_values: Mapping[str, Mapping[str, str]],
    baseline: str,
    axis_keys: Mapping[str, str] | None = None,
) -> list[AxisValueChange]:
    """Per (axis, value) other than the baseline's: what the value changes, and whether it is a
    bundle. ``configs``: variant (group) -> resolved config tree; ``axis_values``: variant -> axis
    label -> value label (``Variant.axis_values``, or the runs' ``axis.*`` tags); ``axis_keys``: axis
    label -> dotted key when known (a recipe), else inferred from the changed keys."""
    base_axes = axis_values.get(baseline, {})
    by_axes = {canonical(a): g for g, a in axis_values.items() if g in configs}
    out = []
    for axis, reference in base_axes.items():
        values = list(
            dict.fromkeys(a.get(axis) for a in axis_values.values() if a.get(axis) not in (None, reference))
        )
        for value in values:
            pairs = []
            for group, axes in axis_values.items():
                partner = by_axes.get(canonical({**axes, axis: reference}))
                if axes.get(axis) == value and group in configs and partner is not None:
                    distance = sum(axes.get(a) != v for a, v in base_axes.items() if a != axis)
                    pairs.append((distance, group, partner))
            if not pairs:
                key = (axis_keys or {}).get(axis)
                out.append(AxisValueChange(axis, value, reference, key, (), None, None))
                continue
            _, group, partner = min(pairs, key=lambda p: p[0])
            changes = config_changes(configs[partner], configs[group])
            key = (axis_keys or {}).get(axis) or infer_axis_key(axis, changes)
            named = named_keys(key, value, configs[group], configs[partner]) if key else ()
            out.append(AxisValueChange(axis, value, reference, key, named, changes, (group, partner)))
    return out


@dataclass
class RecipeChanges:
    """A loaded recipe's variants (one per group, not per seed) against its baseline."""

    baseline: str
    note: str | None  # why the baseline is not the recipe's own, when it is not
    variants: dict[str, Changes]  # group -> changes against the baseline, in recipe order
    axes: list[AxisValueChange]


def recipe_changes(loaded: Any) -> RecipeChanges:
    """``loaded``: a ``bench.recipe.load.LoadedRecipe``. The baseline is the recipe's ``baseline:``
    variant, else the first variant (said in ``note``)."""
    first = {}
    for variant in loaded.variants:
        first.setdefault(variant.group, variant)
    configs = {group: v.config for group, v in first.items()}
    wanted, note = loaded.recipe.baseline, None
    baseline = wanted if wanted in configs else next(iter(configs))
    if wanted is None:
        note = "the recipe names no baseline: the first variant stands in"
    elif wanted != baseline:
        note = f"the recipe's baseline {wanted!r} is not one of its variants: the first variant stands in"
    keys = list(dict.fromkeys(k for v in loaded.variants for k in v.axes))
    axis_keys = {axis_label(k, keys): k for k in keys}
    variants = {group: config_changes(configs[baseline], config) for group, config in configs.items()}
    axis_values = {group: v.axis_values for group, v in first.items()}
    return RecipeChanges(
        baseline, note, variants, axis_value_changes(configs, axis_values, baseline, axis_keys)
    )
