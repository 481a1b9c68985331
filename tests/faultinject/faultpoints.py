"""Named fault points, so a test can stop or kill a real ``bench`` process exactly where it says
instead of racing it with sleeps and polling. They live here, in the tests: bench itself has no
fault code. ``sitecustomize.py`` (this folder first on ``PYTHONPATH``, as ``tests.helpers.bench_env``
sets it) arms them in every interpreter of a run (driver, forkserver and variant children, tune
workers, Ray workers): when the points are imported, the functions in ``WHERE`` are wrapped, so a
point fires on their entry or exit, at the moment bench reaches it.

Arm with ``BENCH_FAULT=point:action[,point:action...]``; unarmed, nothing here is imported.
Actions:

    kill   SIGKILL this process        term  SIGTERM this process     int  SIGINT this process
    exit   os._exit(99) (a crash that skips every handler)
    block  touch ``$BENCH_FAULT_RELEASE.reached.<pid>``, then wait until ``$BENCH_FAULT_RELEASE``
           exists (signals still arrive while it waits)
    log    append ``<point> <scope> <pid>`` to ``$BENCH_FAULT_LOG`` and go on (count how often a place ran)

With ``BENCH_FAULT_ONCE=PATH`` a fault fires only in the first process to reach it (the one that
creates PATH): a retried task, or the next variant, runs through (e.g. a Ray retry after a kill).

A ``run.*`` point is scoped to its variant: it also fires ``name@<variant_id>``, so one variant of
a matrix can be hit alone.
"""

from __future__ import annotations

import contextvars
import functools
import importlib.abc
import importlib.machinery
import inspect
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ACTIONS = ("kill", "term", "int", "exit", "block", "log")
POINTS = (
    "tune.asked", "tune.claimed", "tune.trial_leased", "tune.trial_run_opened",
    "run.open.created", "run.train_start", "run.epoch_end.N", "run.checkpoint.N", "run.after_checkpoint",
    "run.close.after_metrics", "run.export.copied", "run.close.after_export", "run.close.before_status",
)  # fmt: skip
_POINT_RE = re.compile("|".join(re.escape(p).replace("N", r"\d+") for p in POINTS))
_armed: dict[str, str] = {}
# The variant whose run is being recorded: the close steps get no variant of their own.
_variant: contextvars.ContextVar[str] = contextvars.ContextVar("variant", default="")


def parse(spec: str) -> dict[str, str]:
    """``point[@scope]:action,...`` as {point: action}; a typo is an error, not a point that never fires."""
    out: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        point, _, action = item.rpartition(":")
        if not point or action not in ACTIONS:
            raise ValueError(f"BENCH_FAULT: '{item}' is not point:action with action one of {ACTIONS}")
        if not _POINT_RE.fullmatch(point.split("@", 1)[0]):
            raise ValueError(f"BENCH_FAULT: unknown point '{point}'; allowed: {', '.join(POINTS)} (N: epoch)")
        out[point] = action
    return out


def fire(name: str, scope: str = "") -> None:
    """Do what ``BENCH_FAULT`` says for ``name`` (and ``name@scope``)."""
    for point in (name, f"{name}@{scope}") if scope else (name,):
        action = _armed.get(point)
        if action is not None and (action == "log" or _first_to_fire()):
            _act(point, action, scope)


def _first_to_fire() -> bool:
    once = os.environ.get("BENCH_FAULT_ONCE")
    if not once:
        return True
    try:
        os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def _act(name: str, action: str, scope: str) -> None:
    if action == "log":
        with open(os.environ["BENCH_FAULT_LOG"], "a") as fh:
            fh.write(f"{name} {scope or '-'} {os.getpid()}\n")
        return
    print(f"fault: {name}: {action} (pid {os.getpid()})", file=sys.stderr, flush=True)
    if action == "block":
        release = Path(os.environ["BENCH_FAULT_RELEASE"])
        Path(f"{release}.reached.{os.getpid()}").touch()
        while not release.exists():
            time.sleep(0.05)
    elif action == "exit":
        os._exit(99)
    else:
        sig = {"kill": signal.SIGKILL, "term": signal.SIGTERM, "int": signal.SIGINT}[action]
        os.kill(os.getpid(), sig)
        if "bench.util.signals" in sys.modules and sys.modules["bench.util.signals"].deferring():
            return  # held back by deferred_signals and acted on when that ends
        time.sleep(5)  # the signal is delivered at once; its handler runs here


# --- where each point is in bench -----------------------------------------------------------------
# Point = a function of the call's bound arguments (and the module) giving (name, scope), or None
# where this call is not the point.
Point = Callable[[dict[str, Any], Any], "tuple[str, str] | None"]


def _at(where: str, point: Point) -> Callable[[Callable, Any], Callable]:
    """Fire ``point`` on entry (``where="entry"``) or on return (``"exit"``) of the wrapped function."""

    def wrap(fn: Callable, module: Any) -> Callable:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            hit = point(bound.arguments, module)
            if hit and where == "entry":
                fire(*hit)
            out = fn(*args, **kwargs)
            if hit and where == "exit":
                fire(*hit)
            return out

        return wrapper

    return wrap


def _record_scope(fn: Callable, module: Any) -> Callable:
    """``run_recorded``: the variant is the scope of the close steps, and ``tune.trial_run_opened``
    fires once the caller has been told the run's id (``on_open``)."""

    @functools.wraps(fn)
    def wrapper(rec: Any, variant: Any, *args: Any, on_open: Callable | None = None, **kwargs: Any) -> Any:
        if on_open is not None:
            told = on_open

            def on_open(run_id: str) -> None:
                told(run_id)
                fire("tune.trial_run_opened")

        token = _variant.set(variant.variant_id)
        try:
            return fn(rec, variant, *args, on_open=on_open, **kwargs)
        finally:
            _variant.reset(token)

    return wrapper


class _TrainingPoints:
    """A loop hook (bench/engine/hooks.py) for the points inside training."""

    def __init__(self, scope: str):
        self.scope = scope

    def on_start(self, state: Any) -> None:  # built, and resumed from a checkpoint if there is one
        fire("run.train_start", self.scope)

    def on_epoch_end(self, state: Any, epoch: int, record: dict[str, float]) -> None:
        fire(f"run.epoch_end.{epoch}", self.scope)

    def on_end(self, state: Any, result: Any) -> None:
        pass


def _with_training_points(fn: Callable, module: Any) -> Callable:
    """``recorded.train``: the training points as the last of the loop's hooks."""

    @functools.wraps(fn)
    def wrapper(rec: Any, run_id: str, variant: Any, *, hooks: tuple = (), **kwargs: Any) -> Any:
        return fn(rec, run_id, variant, hooks=(*hooks, _TrainingPoints(variant.variant_id)), **kwargs)

    return wrapper


def _closing(name: str) -> Point:
    return lambda a, m: (name, _variant.get())


def _created(a: dict[str, Any], m: Any) -> tuple[str, str] | None:
    """A new run created, before its params and config.yaml (a reopened run passes ``previous``)."""
    return ("run.open.created", a["variant"].variant_id) if a["previous"] is None else None


def _checkpointed(a: dict[str, Any], m: Any) -> tuple[str, str] | None:
    """Epoch N's ``last.ckpt`` written (not ``best.ckpt``; nothing is written without a run dir)."""
    state = a["state"]
    if a["name"] != m.LAST or state.run_dir is None:
        return None
    return f"run.checkpoint.{state.epoch}", state.variant.variant_id


WHERE: dict[str, dict[str, Callable[[Callable, Any], Callable]]] = {
    "bench.tune.worker": {"objective": _at("entry", lambda a, m: ("tune.asked", ""))},  # asked, not claimed
    "bench.tune.liveness": {"claim": _at("exit", lambda a, m: ("tune.claimed", ""))},
    # the trial is claimed (and marked a pilot or not); its parameters are drawn next
    "bench.tune.space": {"Space.suggest": _at("entry", lambda a, m: ("tune.trial_leased", ""))},
    "bench.execution.recorded": {
        "run_recorded": _record_scope,
        "describe": _at("entry", _created),
        "train": _with_training_points,
        "log_final_metrics": _at("exit", _closing("run.close.after_metrics")),
        "export_result": _at("exit", _closing("run.close.after_export")),
        "tag_outcome": _at("exit", _closing("run.close.before_status")),
    },
    "bench.execution.task": {  # the weights copied, the sidecar not yet naming their run key
        "label_export": _at("entry", lambda a, m: ("run.export.copied", a["variant"].variant_id))
    },
    "bench.engine.checkpoint": {"save_checkpoint": _at("exit", _checkpointed)},
    "bench.engine.loop": {  # after every epoch's checkpoint step, whether or not it saved one
        "checkpoint_epoch": _at("exit", lambda a, m: ("run.after_checkpoint", a["state"].variant.variant_id))
    },
}


def _patch(module: Any) -> None:
    for dotted, wrap in WHERE[module.__name__].items():
        *owner_path, attr = dotted.split(".")
        try:
            owner = functools.reduce(getattr, owner_path, module)
            fn = getattr(owner, attr)
        except AttributeError:  # bench moved the moment: say where to follow it
            raise AttributeError(
                f"fault points: {module.__name__}.{dotted} is gone; update WHERE in {__file__}"
            ) from None
        setattr(owner, attr, wrap(fn, module))


class _Finder(importlib.abc.MetaPathFinder):
    """Finds a module of ``WHERE`` as the other finders do, and patches it once it has run."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name not in WHERE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)  # bench's own files
        if spec is None:
            return None
        run = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            run(module)
            _patch(module)

        spec.loader.exec_module = exec_module
        return spec


def install(spec: str) -> None:
    """Arm ``spec`` in this process: patch the bench modules of ``WHERE`` as they are imported."""
    _armed.update(parse(spec))
    already = [name for name in WHERE if name in sys.modules]
    if already:  # sitecustomize runs before any bench import; a late install would miss these
        raise RuntimeError(f"fault points installed after {already} were imported")
    sys.meta_path.insert(0, _Finder())
