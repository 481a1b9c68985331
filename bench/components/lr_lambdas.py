"""Named LR factor functions for LambdaLR / MultiplicativeLR (no eval of strings). Each factory
takes the schedule's length and returns ``f(epoch) -> factor``; ``epoch`` may be fractional when
the schedule anneals per step."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

from bench.components.registry import Registry

LR_LAMBDAS: Registry[Callable[..., Callable[[int], float]]] = Registry("lr_lambda")


def _constant(epoch: float) -> float:
    return 1.0


def _linear_decay(epoch: float, *, total: int, end: float = 0.0) -> float:
    return 1.0 - (1.0 - end) * min(epoch, total) / max(total, 1)


def _inverse_sqrt(epoch: float) -> float:
    return 1.0 / math.sqrt(epoch + 1)


def _poly(epoch: float, *, total: int, power: float = 2.0) -> float:
    return (1.0 - min(epoch, total) / max(total, 1)) ** power


def _constant_factor(epoch: float, *, gamma: float = 0.95) -> float:
    return gamma


LR_LAMBDAS.register("constant", lambda total, **kw: functools.partial(_constant, **kw))
LR_LAMBDAS.register("linear_decay", lambda total, **kw: functools.partial(_linear_decay, total=total, **kw))
LR_LAMBDAS.register("inverse_sqrt", lambda total, **kw: functools.partial(_inverse_sqrt, **kw))
LR_LAMBDAS.register("poly", lambda total, **kw: functools.partial(_poly, total=total, **kw))
LR_LAMBDAS.register("constant_factor", lambda total, **kw: functools.partial(_constant_factor, **kw))


def per_step(fn: Callable[[float], float], steps_per_epoch: int, step: int) -> float:
    """``fn`` of the fractional epoch: a per-epoch factor function evaluated at every step."""
    return fn(step / steps_per_epoch)
