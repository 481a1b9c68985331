"""``bench ls [KIND] [PATTERN]``: the components a recipe can name, read from the real registries
(so the list is what the installed torch/timm/torchvision offer), filtered by a glob."""

from __future__ import annotations

import argparse
import fnmatch
from collections.abc import Callable, Iterable

KINDS = ("schedulers", "optimizers", "models", "datasets", "losses", "tricks", "lr_lambdas")
ALIASES = {"scheduler": "schedulers", "optimizer": "optimizers", "model": "models", "dataset": "datasets",
           "data": "datasets", "loss": "losses", "trick": "tricks", "lr_lambda": "lr_lambdas"}  # fmt: skip
IMPORT_PATH_NOTE = "or any 'package.module:Name' import path"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", nargs="?", help=f"one of: {', '.join(KINDS)} (default: all)")
    parser.add_argument(
        "pattern", nargs="?", default="*", help="glob on the names, e.g. 'resnet*' (quote it in the shell)"
    )


def main(args: argparse.Namespace) -> int:
    from bench.errors import RecipeError

    kind = ALIASES.get(args.kind, args.kind)
    if kind is not None and kind not in KINDS:
        raise RecipeError(f"unknown kind '{args.kind}'; allowed: {', '.join(KINDS)}", source="bench ls")
    for name in [kind] if kind else KINDS:
        if name == "models" and not kind and args.pattern == "*":
            print("models: bench's short names below, any of the timm models (bench ls models 'PATTERN'), "
                  "'torchvision:<name>', " + IMPORT_PATH_NOTE)  # fmt: skip
            _print_rows(_short_models(), args.pattern)
            continue
        print(f"{name}:" + ("" if name in ("tricks", "lr_lambdas") else f" ({IMPORT_PATH_NOTE})"))
        _print_rows(LISTERS[name](args.pattern), args.pattern)
    return 0


def _print_rows(rows: Iterable[tuple[str, str]], pattern: str) -> None:
    rows = list(rows)
    width = max((len(n) for n, _ in rows), default=0)
    for name, what in rows:
        print(f"  {name.ljust(width)}  {what}".rstrip())
    if not rows:
        print(f"  (nothing matches '{pattern}')")


def _matching(names: Iterable[str], pattern: str) -> list[str]:
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def _doc(obj: object) -> str:
    text = (getattr(obj, "__doc__", None) or "").strip()
    return text.splitlines()[0] if text else ""


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _schedulers(pattern: str) -> list[tuple[str, str]]:
    from bench.components.schedulers import SCHEDULERS

    rows = []
    for name in _matching(SCHEDULERS.names(), pattern):
        spec = SCHEDULERS.get(name)
        warmup = ", warm-up allowed" if spec.warmup else ""
        rows.append((name, f"{_qualname(spec.cls)} (steps per {spec.policy}{warmup})"))
    return rows


def _optimizers(pattern: str) -> list[tuple[str, str]]:
    from bench.components.optimizers import OPTIMIZERS

    return [(n, _qualname(OPTIMIZERS.get(n))) for n in _matching(OPTIMIZERS.names(), pattern)]


def _short_models(pattern: str = "*") -> list[tuple[str, str]]:
    from bench.components.models import MODELS

    return [(n, f"timm '{MODELS.get(n)}'") for n in _matching(MODELS.names(), pattern)]


def _models(pattern: str) -> list[tuple[str, str]]:
    import timm
    import torchvision

    from bench.components.models import TORCHVISION_PREFIX

    rows = _short_models(pattern)
    rows += [(n, "timm") for n in timm.list_models(pattern) if n not in dict(rows)]
    for name in torchvision.models.list_models(module=torchvision.models):
        full = TORCHVISION_PREFIX + name
        if fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(full, pattern):
            rows.append((full, "torchvision"))
    return rows


def _datasets(pattern: str) -> list[tuple[str, str]]:
    from bench.data.registry import DATASETS

    return [(n, _doc(DATASETS.get(n))) for n in _matching(DATASETS.names(), pattern)]


def _losses(pattern: str) -> list[tuple[str, str]]:
    from bench.components.losses import LOSSES

    return [(n, _qualname(LOSSES.get(n))) for n in _matching(LOSSES.names(), pattern)]


def _lr_lambdas(pattern: str) -> list[tuple[str, str]]:
    from bench.components.schedulers import LR_LAMBDAS

    return [(n, "lr_lambda for the lambda and multiplicative schedulers")
            for n in _matching(LR_LAMBDAS.names(), pattern)]  # fmt: skip


def _tricks(pattern: str) -> list[tuple[str, str]]:
    from bench.tricks import load_all

    tricks = load_all()
    return [(n, _doc(tricks.get(n))) for n in _matching(tricks.names(), pattern)]


LISTERS: dict[str, Callable[[str], list[tuple[str, str]]]] = {
    "schedulers": _schedulers,
    "optimizers": _optimizers,
    "models": _models,
    "datasets": _datasets,
    "losses": _losses,
    "tricks": _tricks,
    "lr_lambdas": _lr_lambdas,
}
