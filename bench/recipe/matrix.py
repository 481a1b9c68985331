"""Expand a recipe's ``matrix`` into variants: the cartesian product of its axes, minus
``exclude`` entries, plus ``include`` entries, each repeated once per seed."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from typing import Any

from bench.errors import RecipeError

RESERVED = ("exclude", "include")
# Characters kept as they are in a file name made from a variant name; anything else (path
# separators, control characters, ':' and the like) is replaced.
_FILENAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.,:;=+@()\[\]-]")
MAX_FILENAME = 150  # characters before the hash; well under the 255 bytes file systems allow


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def flow(value: Any) -> str:
    """A value as a recipe would write it on one line (``{name: onecycle, max_lr: 0.1}``)."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**6)
    return text.strip().removesuffix("\n...")


def stable_hash(value: Any, length: int = 12) -> str:
    return hashlib.sha256(canonical(value).encode()).hexdigest()[:length]


def axis_label(key: str, all_keys: list[str]) -> str:
    """``train.scheduler.name`` -> ``scheduler``; falls back to more of the path on clashes."""
    parts = label_parts(key)
    clashes = [k for k in all_keys if k != key and label_parts(k)[-1] == parts[-1]]
    return ".".join(parts[-2:]) if clashes and len(parts) > 1 else parts[-1]


def label_parts(key: str) -> list[str]:
    """The dotted key's parts, without a trailing ``name`` (``train.scheduler.name`` names the
    scheduler)."""
    parts = key.split(".")
    return parts[:-1] if parts[-1] == "name" and len(parts) > 1 else parts


def value_label(value: Any) -> str:
    """A short label: scalars as written, a mapping by its ``name`` (or "on"), None as "none"."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return str(value["name"]) if "name" in value else "on"
    if isinstance(value, list):
        return "[" + ";".join(value_label(v) for v in value) + "]"
    return str(value)


def axis_value_labels(values: list[Any]) -> dict[str, str]:
    """Labels for every value of one axis, keyed by canonical JSON; values whose short labels
    clash get the keys that tell them apart (``adamw(lr:0.001)`` vs ``adamw(lr:0.01)``)."""
    unique = list({canonical(v): v for v in values}.values())
    labels = {canonical(v): value_label(v) for v in unique}
    for v in unique:
        clashing = [c for c in unique if value_label(c) == value_label(v)]
        if isinstance(v, dict) and len(clashing) > 1:
            dicts = [c for c in clashing if isinstance(c, dict)]
            keys = sorted({k for c in dicts for k in c if k != "name"})
            differing = [k for k in keys if len({canonical(c.get(k)) for c in dicts}) > 1]
            spelled = ";".join(f"{k}:{value_label(v.get(k))}" for k in differing)
            labels[canonical(v)] = f"{value_label(v)}({spelled})"
    return labels


def expand_axes(matrix: dict[str, Any], *, source: str) -> list[dict[str, Any]]:
    """Return the list of axis assignments ``{dotted_key: value}``; ``[{}]`` for no matrix."""

    def refuse(message: str, key: str) -> RecipeError:
        return RecipeError(message, source=source, key=key)

    if not isinstance(matrix, dict):
        raise refuse("matrix must be a mapping of dotted keys to lists", "matrix")
    axes = {k: v for k, v in matrix.items() if k not in RESERVED}
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            raise refuse("a matrix axis must be a non-empty list of values", f"matrix.{key}")
    keys = list(axes)
    combos = [dict(zip(keys, values)) for values in itertools.product(*axes.values())]
    for name in RESERVED:
        entries = matrix.get(name, [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise refuse(f"{name} must be a list of mappings {{dotted_key: value}}", f"matrix.{name}")
    for i, pattern in enumerate(matrix.get("exclude", [])):
        unknown = [k for k in pattern if k not in axes]
        if unknown:
            raise refuse(
                f"key {unknown[0]!r} is not a matrix axis; axes: {', '.join(keys)}", f"matrix.exclude[{i}]"
            )
        for k, v in pattern.items():  # a value off its axis excludes nothing: a typo, or a mapping in part
            if canonical(v) not in {canonical(a) for a in axes[k]}:
                raise refuse(
                    f"{k}: {flow(v)} is not one of the axis's values, so this entry excludes nothing; "
                    f"values: {', '.join(flow(a) for a in axes[k])}"
                    + (" (a mapping must match one in full)" if isinstance(v, dict) else ""),
                    f"matrix.exclude[{i}]",
                )
        combos = [c for c in combos if any(canonical(c.get(k)) != canonical(v) for k, v in pattern.items())]
    for extra in matrix.get("include", []):
        if not any(canonical(c) == canonical(extra) for c in combos):
            combos.append(dict(extra))
    if not combos:
        raise refuse("the matrix excludes every variant", "matrix.exclude")
    return combos


def variant_name(axes: dict[str, Any], seed: int | None, all_keys: list[str], labels: dict[str, Any]) -> str:
    parts = [
        f"{axis_label(key, all_keys)}={labels[key].get(canonical(value)) or value_label(value)}"
        for key, value in axes.items()
    ]
    if seed is not None:
        parts.append(f"seed={seed}")
    return ",".join(parts) if parts else "base"


def safe_filename(text: str) -> str:
    """A file name for ``text`` (a variant name, an axis value) that stays inside its folder:
    unsafe characters become ``_``, a leading dot is replaced, and a long name is cut; when
    anything changed, a short hash of the original is appended so distinct names stay distinct.
    Names of letters, digits and ``_.,:;=+@()[]-`` (what bench's own variant names use) are kept."""
    safe = _FILENAME_UNSAFE.sub("_", text)
    if safe.startswith("."):
        safe = "_" + safe[1:]
    if safe == text and 0 < len(safe) <= MAX_FILENAME:
        return safe
    return f"{safe[:MAX_FILENAME] or '_'}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"
