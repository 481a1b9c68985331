"""User code named by import path (``mymodels:Net`` as ``model.name``, a loss, a data set).

Where it is found: as Hydra and torchtune users expect, the recipe's own folder and the current
directory are on the import path, with no PYTHONPATH set by hand; ``PYTHONPATH`` is extended
too, and ``BENCH_IMPORT_PATHS`` (which Ray tasks receive), so worker processes (Ray tasks,
spawned tuning workers, the forkserver's children) find it.

What it is: a run's identity includes the source of every user module a recipe names (a hash of
the module's file), so editing ``mymodels.py`` retrains instead of reporting stale results.
Library code (the standard library, site-packages, bench itself) is versioned elsewhere and is
not hashed: a recipe of registry names keeps its run keys. Torch-free, like the recipe leaf.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys
import sysconfig
from pathlib import Path
from typing import Any

PATHS_VAR = "BENCH_IMPORT_PATHS"
MODULE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def add_import_paths(recipe_source: str | Path | None) -> list[str]:
    """Put the recipe's folder and the current directory on ``sys.path`` and ``PYTHONPATH``
    (first, as Python puts a script's folder); returns the folders added."""
    folders = [Path.cwd()]
    if recipe_source and Path(recipe_source).is_file():
        folders.insert(0, Path(recipe_source).resolve().parent)
    added = []
    for folder in dict.fromkeys(str(f) for f in folders):
        if folder not in sys.path:
            sys.path.insert(0, folder)
            added.append(folder)
        for var in ("PYTHONPATH", PATHS_VAR):
            env = [p for p in os.environ.get(var, "").split(os.pathsep) if p]
            if folder not in env:
                os.environ[var] = os.pathsep.join([folder, *env])
    if added:
        importlib.invalidate_caches()
    return added


def sync_import_paths() -> None:
    """In a worker that started before the driver extended its import path (a forkserver's child
    gets the server's older ``sys.path``; a Ray task gets ``BENCH_*`` variables): add them."""
    for folder in reversed([p for p in os.environ.get(PATHS_VAR, "").split(os.pathsep) if p]):
        if folder not in sys.path:
            sys.path.insert(0, folder)


def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots.add(str(Path(__file__).resolve().parents[1]))  # bench itself
    return tuple(str(Path(r).resolve()) + os.sep for r in roots)


def user_module_file(import_path: str) -> Path | None:
    """The source file of the module of ``package.module:Name`` when it is user code (not the
    standard library, an installed package or bench), else None."""
    module, colon, _ = import_path.partition(":")
    if not colon or not MODULE_RE.fullmatch(module):
        return None
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.has_location or not spec.origin.endswith(".py"):
        return None
    path = Path(spec.origin).resolve()
    if str(path).startswith(_library_roots()) or {"site-packages", "dist-packages"} & set(path.parts):
        return None
    return path


def component_paths(body: Any) -> list[str]:
    """Every component a resolved recipe body (``RecipeBody``) names: the import paths among them
    are what the run's code is."""
    train = body.train
    loss = train.loss if isinstance(train.loss, str) else train.loss.name
    names = [body.data.name, body.model.name, loss, train.optimizer.name, train.scheduler.name]
    lr_lambda = train.scheduler.kwargs.get("lr_lambda")
    if isinstance(lr_lambda, str):
        names.append(lr_lambda)
    return [n for n in names if isinstance(n, str) and ":" in n]


def code_fingerprint(body: Any, memo: dict[str, str] | None = None) -> str | None:
    """``module=sha256:<hex>`` for every user module ``body`` names (sorted, comma-separated), or
    None when it names none (registry names only: the run key stays what it was)."""
    memo = {} if memo is None else memo
    parts = {}
    for name in component_paths(body):
        path = user_module_file(name)
        if path is None:
            continue
        key = f"code:{path}"
        if key not in memo:
            memo[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        parts[name.split(":", 1)[0]] = memo[key]
    return ",".join(f"{m}=sha256:{h}" for m, h in sorted(parts.items())) or None


MODEL_CONTRACT = (
    "a model factory named by import path is called as factory(num_classes=N, **model.kwargs), plus "
    "pretrained=model.pretrained when it takes pretrained, and returns an nn.Module (a class or a function)"
)


def check_model_factory(name: str, pretrained: bool, kwargs: dict[str, Any]) -> None:
    """Bind ``model.name: pkg.mod:factory`` to its signature before anything is recorded, with the
    contract in the message (without this, a mismatch fails inside the first recorded run)."""
    import inspect

    from bench.components.registry import import_object
    from bench.components.signature import allowed_kwargs, check_kwargs

    factory = import_object(name)
    if not callable(factory):
        raise ValueError(
            f"model '{name}' is a {type(factory).__name__}, not a class or function; {MODEL_CONTRACT}"
        )
    clash = [k for k in ("num_classes", "pretrained") if k in kwargs]
    if clash:
        raise ValueError(
            f"model.kwargs: set {clash[0]} as model.{clash[0]}, not among the factory's arguments"
        )
    allowed = allowed_kwargs(factory)
    if allowed is None:
        return  # takes **kwargs: anything goes
    if "num_classes" not in allowed:
        raise ValueError(
            f"model '{name}' does not take num_classes= (it takes: {', '.join(allowed) or 'nothing'}); {MODEL_CONTRACT}"
        )
    if pretrained and "pretrained" not in allowed:
        raise ValueError(
            f"model.pretrained: model '{name}' does not take pretrained=; load your own weights with "
            f"model.weights: PATH, or accept pretrained= in the factory; {MODEL_CONTRACT}"
        )
    check_kwargs(factory, kwargs, what=f"model.kwargs: model '{name}'")
    params = inspect.signature(factory).parameters.values()
    missing = [p.name for p in params if p.default is p.empty and p.name not in ("self", "num_classes", *kwargs)
               and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]  # fmt: skip
    if missing:
        raise ValueError(
            f"model.kwargs: model '{name}' needs argument '{missing[0]}' (give it under model.kwargs)"
        )
