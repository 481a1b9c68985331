"""``bench ls [KIND] [PATTERN]``: the components a recipe can name, read from the real registries
(so the list is what the installed torch/timm/torchvision offer), filtered by a glob."""

from __future__ import annotations

import argparse
import fnmatch
import importlib
from collections.abc import Iterable

KINDS = ("schedulers", "optimizers", "models", "datasets", "losses", "tricks", "lr_lambdas")
ALIASES = {"scheduler": "schedulers", "optimizer": "optimizers", "model": "models", "dataset": "datasets",
           "data": "datasets", "loss": "losses", "trick": "tricks", "lr_lambda": "lr_lambdas"}  # fmt: skip
IMPORT_PATH_NOTE = "or any 'package.module:Name' import path"
# Where each kind's registry lives; imported only when that kind is listed (torch, timm).
REGISTRIES = {
    "schedulers": "bench.components.schedulers:SCHEDULERS",
    "optimizers": "bench.components.optimizers:OPTIMIZERS",
    "models": "bench.components.models:MODELS",
    "datasets": "bench.data.registry:DATASETS",
    "losses": "bench.components.losses:LOSSES",
    "lr_lambdas": "bench.components.schedulers:LR_LAMBDAS",
}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", nargs="?", help=f"one of: {', '.join(KINDS)} (default: all)")
    parser.add_argument(
        "pattern", nargs="?", default="*",
        help="glob on the names, e.g. 'resnet*' (quote it in the shell); a word without * ? [ matches "
        "anywhere in the name: 'cos' finds cosine",
    )  # fmt: skip


def main(args: argparse.Namespace) -> int:
    from bench.errors import RecipeError

    kind = ALIASES.get(args.kind, args.kind)
    if not any(c in args.pattern for c in "*?["):  # `bench ls schedulers cos` meant "names with cos"
        args.pattern = f"*{args.pattern}*"
    if kind is not None and kind not in KINDS:
        raise RecipeError(f"unknown kind '{args.kind}'; allowed: {', '.join(KINDS)}", source="bench ls")
    for name in [kind] if kind else KINDS:
        if name == "models" and not kind and args.pattern == "*":
            print("models: bench's short names below, any of the timm models (bench ls models 'PATTERN'), "
                  "'torchvision:<name>', " + IMPORT_PATH_NOTE)  # fmt: skip
            _print_rows(_rows("models", "*", timm=False), args.pattern)
            continue
        print(f"{name}:" + ("" if name in ("tricks", "lr_lambdas") else f" ({IMPORT_PATH_NOTE})"))
        _print_rows(_rows(name, args.pattern), args.pattern)
    return 0


def _print_rows(rows: Iterable[tuple[str, str]], pattern: str) -> None:
    rows = list(rows)
    width = max((len(n) for n, _ in rows), default=0)
    for name, what in rows:
        print(f"  {name.ljust(width)}  {what}".rstrip())
    if not rows:
        print(f"  (nothing matches '{pattern}')")


def _rows(kind: str, pattern: str, timm: bool = True) -> list[tuple[str, str]]:
    """(name, what it is) of every ``kind`` matching ``pattern``; models also from timm and
    torchvision unless ``timm=False`` (bench's short names only)."""
    if kind == "tricks":
        from bench.tricks import load_all

        registry = load_all()
    else:
        module, _, attr = REGISTRIES[kind].partition(":")
        registry = getattr(importlib.import_module(module), attr)
    rows = [
        (n, _describe(kind, registry.get(n))) for n in registry.names() if fnmatch.fnmatchcase(n, pattern)
    ]
    if kind == "models" and timm:
        rows += _library_models(pattern, {n for n, _ in rows})
    return rows


def _describe(kind: str, item: object) -> str:
    if kind in ("datasets", "tricks"):  # the first line of the docstring
        text = (getattr(item, "__doc__", None) or "").strip()
        return text.splitlines()[0] if text else ""
    if kind == "models":  # a short name stands for a timm model or for one of bench's own factories
        return f"bench's factory {item}" if ":" in str(item) else f"timm '{item}'"
    if kind == "lr_lambdas":
        return "lr_lambda for the lambda and multiplicative schedulers"
    cls = item.cls if kind == "schedulers" else item
    text = f"{cls.__module__}.{cls.__qualname__}"
    if kind == "schedulers":
        from bench.components.schedulers import STEPPED_AS

        stepped = "steps its schedulers together" if item.composite else f"steps {STEPPED_AS[item.policy]}"
        text += f" ({stepped}{', warm-up allowed' if item.warmup else ''})"
    return text


def _library_models(pattern: str, short: set[str]) -> list[tuple[str, str]]:
    import timm
    import torchvision

    from bench.components.models import TORCHVISION_PREFIX

    rows = [(n, "timm") for n in timm.list_models(pattern) if n not in short]
    for name in torchvision.models.list_models(module=torchvision.models):
        full = TORCHVISION_PREFIX + name
        if fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(full, pattern):
            rows.append((full, "torchvision"))
    return rows
