"""A small name -> component registry (after fvcore's): unknown names fail loudly with the
registry's name and the known names; users can name their own component by import path
(``package.module:Name``) instead of registering it."""

from __future__ import annotations

import difflib
import importlib
from typing import Any, Generic, TypeVar

from bench.errors import BenchError

T = TypeVar("T")


class UnknownComponentError(BenchError, ValueError):
    """A name that is neither registered nor an importable ``module:Name`` path."""

    exit_code = 2


def is_import_path(name: str) -> bool:
    return ":" in name and not name.startswith(":") and not name.endswith(":")


def import_object(path: str) -> Any:
    """Import ``package.module:Attr.sub`` without evaluating any string."""
    module_name, _, attr_path = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise UnknownComponentError(f"cannot import module '{module_name}' of '{path}': {exc}") from None
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UnknownComponentError(
                f"module '{module_name}' has no attribute '{attr_path}' ('{path}')"
            ) from None
    return obj


class Registry(Generic[T]):
    """Maps names to components. ``get`` also accepts ``package.module:Name``."""

    def __init__(self, kind: str, items: dict[str, T] | None = None):
        self.kind = kind
        self._items: dict[str, T] = dict(items or {})

    def register(self, name: str, item: T | None = None) -> Any:
        """Register ``item`` under ``name``; usable as a decorator when ``item`` is omitted."""

        def _add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            self._items[name] = obj
            return obj

        return _add(item) if item is not None else _add

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def get(self, name: str) -> T:
        if name in self._items:
            return self._items[name]
        if is_import_path(name):
            return import_object(name)
        close = difflib.get_close_matches(name, self.names(), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        allowed = ", ".join(self.names()) + ", or an import path 'package.module:Name'"
        raise UnknownComponentError(f"unknown {self.kind} '{name}'{hint}; allowed: {allowed}")
