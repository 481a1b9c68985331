"""Bind recipe keys to a component's constructor signature before anything runs, so a
misspelt argument fails with the list of arguments the component takes."""

from __future__ import annotations

import inspect
from typing import Any


def allowed_kwargs(component: Any, skip: tuple[str, ...] = ()) -> tuple[str, ...] | None:
    """The keyword arguments ``component`` takes, minus ``skip``; None when it takes any
    (``**kwargs``, or no signature to read)."""
    init = getattr(component, "__init__", None) if isinstance(component, type) else None
    if (
        getattr(init, "__module__", "") == "torch.nn.modules.module"
        and init.__qualname__ == "Module.__init__"
    ):
        return ()  # an nn.Module without an __init__ of its own takes no arguments (not nn.Module's *args)
    try:
        sig = inspect.signature(component)
    except (TypeError, ValueError):
        return None  # builtins without a signature: nothing to check up front
    params = {n: p for n, p in sig.parameters.items() if n not in skip and n != "self"}
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    return tuple(n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def check_kwargs(component: Any, kwargs: dict[str, Any], *, what: str, skip: tuple[str, ...] = ()) -> None:
    allowed = allowed_kwargs(component, skip)
    if allowed is None:
        return
    unknown = [k for k in kwargs if k not in allowed]
    if unknown:
        raise ValueError(
            f"{what} does not take argument '{unknown[0]}'; allowed: {', '.join(allowed) or '(none)'}"
        )
