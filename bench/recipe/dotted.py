"""Dotted-key access to nested dicts (``train.optimizer.lr``), shared by CLI overrides, matrix
axes, overlays and tuning search spaces."""

from __future__ import annotations

import copy
from typing import Any

from bench.errors import RecipeError


def get_dotted(tree: dict[str, Any], key: str, default: Any = None) -> Any:
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def set_dotted(tree: dict[str, Any], key: str, value: Any, *, source: str | None = None) -> None:
    """Set ``key`` in ``tree``, creating mappings on the way; a scalar in the way is an error."""
    parts = key.split(".")
    if not all(parts):
        raise RecipeError("empty part in dotted key", source=source, key=key)
    node = tree
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise RecipeError(
                f"'{'.'.join(parts[: i + 1])}' is a {type(child).__name__}, not a mapping",
                source=source,
                key=key,
            )
        node = child
    node[parts[-1]] = copy.deepcopy(value)


def delete_dotted(tree: dict[str, Any], key: str, *, source: str | None = None) -> None:
    parent, _, leaf = key.rpartition(".")
    node = get_dotted(tree, parent) if parent else tree
    if not isinstance(node, dict) or leaf not in node:
        raise RecipeError("cannot delete: key not present", source=source, key=key)
    del node[leaf]


def deep_merge(base: dict[str, Any], overlay: dict[str, Any], *, source: str | None = None) -> dict[str, Any]:
    """Merge ``overlay`` into a copy of ``base``; keys with dots in the overlay are dotted paths."""
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        if not isinstance(key, str):
            raise RecipeError(f"keys must be strings, got {key!r}", source=source)
        if key == "matrix" and isinstance(value, dict):
            merged.setdefault("matrix", {}).update(copy.deepcopy(value))
        elif "." in key:
            set_dotted(merged, key, value, source=source)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value, source=source)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings to dotted keys (for MLflow params and tables)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out
