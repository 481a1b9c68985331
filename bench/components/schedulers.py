"""LR schedulers: all ten ``torch.optim.lr_scheduler`` kinds, each with the step policy it
needs (per epoch, per batch, per batch with fractional epochs, or with the validation metric),
defaults derived from the training length, and optional linear warm-up.

The loop calls ``after_batch`` after every optimizer step that really happened and
``after_epoch`` after evaluation: scheduler steps always follow optimizer steps.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch.optim import lr_scheduler as lrs

from bench.components.signature import check_kwargs
from bench.registry import Registry

Policy = Literal["epoch", "batch", "batch_fractional", "plateau"]


@dataclass(frozen=True)
class Context:
    """What a scheduler's defaults may depend on."""

    epochs: int  # epochs the main scheduler covers (after warm-up)
    steps_per_epoch: int
    group_lrs: list[float]
    base_lr: float

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


@dataclass(frozen=True)
class SchedulerSpec:
    cls: type
    policy: Policy
    defaults: Callable[[Context], dict[str, Any]]
    warmup: bool = True  # can be chained after a linear warm-up


# -- named LR factor functions for LambdaLR / MultiplicativeLR (no eval of strings) -------------
LR_LAMBDAS: Registry[Callable[..., Callable[[int], float]]] = Registry("lr_lambda")


def _constant(epoch: int) -> float:
    return 1.0


def _linear_decay(epoch: int, *, total: int, end: float = 0.0) -> float:
    return 1.0 - (1.0 - end) * min(epoch, total) / max(total, 1)


def _inverse_sqrt(epoch: int) -> float:
    return 1.0 / math.sqrt(epoch + 1)


def _poly(epoch: int, *, total: int, power: float = 2.0) -> float:
    return (1.0 - min(epoch, total) / max(total, 1)) ** power


def _constant_factor(epoch: int, *, gamma: float = 0.95) -> float:
    return gamma


LR_LAMBDAS.register("constant", lambda total, **kw: functools.partial(_constant, **kw))
LR_LAMBDAS.register("linear_decay", lambda total, **kw: functools.partial(_linear_decay, total=total, **kw))
LR_LAMBDAS.register("inverse_sqrt", lambda total, **kw: functools.partial(_inverse_sqrt, **kw))
LR_LAMBDAS.register("poly", lambda total, **kw: functools.partial(_poly, total=total, **kw))
LR_LAMBDAS.register("constant_factor", lambda total, **kw: functools.partial(_constant_factor, **kw))


def _lambda_defaults(default_name: str) -> Callable[[Context], dict[str, Any]]:
    return lambda ctx: {"lr_lambda": default_name}


def _scaled(ctx: Context, factor: float) -> list[float]:
    return [lr * factor for lr in ctx.group_lrs]


SCHEDULERS: Registry[SchedulerSpec] = Registry("scheduler")
SCHEDULERS.register("constant", SchedulerSpec(lrs.LambdaLR, "epoch", _lambda_defaults("constant")))
SCHEDULERS.register("lambda", SchedulerSpec(lrs.LambdaLR, "epoch", _lambda_defaults("linear_decay")))
SCHEDULERS.register(
    "multiplicative",
    # MultiplicativeLR multiplies whatever LR it finds, so after LinearLR it would keep the
    # warm-up's start factor forever: no warm-up for it.
    SchedulerSpec(lrs.MultiplicativeLR, "epoch", _lambda_defaults("constant_factor"), warmup=False),
)
SCHEDULERS.register(
    "step", SchedulerSpec(lrs.StepLR, "epoch", lambda c: {"step_size": max(1, c.epochs // 3)})
)
SCHEDULERS.register(
    "multistep",
    SchedulerSpec(
        lrs.MultiStepLR,
        "epoch",
        lambda c: {"milestones": sorted({max(1, c.epochs // 2), max(1, 3 * c.epochs // 4)})},
    ),
)
SCHEDULERS.register("exponential", SchedulerSpec(lrs.ExponentialLR, "epoch", lambda c: {"gamma": 0.9}))
SCHEDULERS.register(
    "cosine", SchedulerSpec(lrs.CosineAnnealingLR, "epoch", lambda c: {"T_max": max(1, c.epochs)})
)
SCHEDULERS.register(
    "plateau",
    SchedulerSpec(lrs.ReduceLROnPlateau, "plateau", lambda c: {"mode": "max", "patience": 2}, warmup=False),
)
SCHEDULERS.register(
    "cyclic",
    SchedulerSpec(
        lrs.CyclicLR,
        "batch",
        lambda c: {
            "base_lr": _scaled(c, 0.1),
            "max_lr": list(c.group_lrs),
            "step_size_up": max(1, c.total_steps // 4),
        },
        warmup=False,  # cycles up from base_lr by itself
    ),
)
SCHEDULERS.register(
    "onecycle",
    SchedulerSpec(
        lrs.OneCycleLR,
        "batch",
        lambda c: {"max_lr": list(c.group_lrs), "total_steps": max(1, c.total_steps)},
        warmup=False,  # its first phase (pct_start) is the warm-up
    ),
)
SCHEDULERS.register(
    "cosine_warm_restarts",
    SchedulerSpec(
        lrs.CosineAnnealingWarmRestarts,
        "batch_fractional",
        lambda c: {"T_0": max(1, c.epochs // 3)},
        warmup=False,
    ),
)

# Arguments given as one number but meant per param group: scaled by each group's LR ratio.
PER_GROUP_LR_ARGS = ("base_lr", "max_lr", "eta_min", "min_lr")


def check_scheduler(name: str, kwargs: dict[str, Any], *, warmup: bool) -> None:
    spec = SCHEDULERS.get(name)
    if not isinstance(spec, SchedulerSpec):  # a user class by import path: treat as per-epoch
        check_kwargs(spec, kwargs, what=f"scheduler '{name}'", skip=("optimizer",))
        return
    own = {k: v for k, v in kwargs.items() if k not in ("lr_lambda", "lambda_kwargs")}
    check_kwargs(spec.cls, own, what=f"scheduler '{name}'", skip=("optimizer", "lr_lambda"))
    if "lr_lambda" in kwargs or "lambda_kwargs" in kwargs:
        if spec.cls not in (lrs.LambdaLR, lrs.MultiplicativeLR):
            raise ValueError(f"scheduler '{name}' does not take lr_lambda; only lambda and multiplicative do")
        LR_LAMBDAS.get(str(kwargs.get("lr_lambda", "constant")))
    if warmup and not spec.warmup:
        raise ValueError(
            f"warmup_epochs is not supported with scheduler '{name}' (per-epoch schedulers only; "
            "onecycle and cyclic ramp up by themselves); set it to 0"
        )


class LRSchedule:
    """A torch scheduler plus the rule for when to step it."""

    def __init__(self, scheduler: Any, policy: Policy, steps_per_epoch: int):
        self.scheduler = scheduler
        self.policy = policy
        self.steps_per_epoch = steps_per_epoch

    def after_batch(self, epoch: int, batch_index: int) -> None:
        if self.policy == "batch":
            self.scheduler.step()
        elif self.policy == "batch_fractional":
            self.scheduler.step(epoch + (batch_index + 1) / self.steps_per_epoch)

    def after_epoch(self, metric: float | None) -> None:
        if self.policy == "epoch":
            self.scheduler.step()
        elif self.policy == "plateau":
            self.scheduler.step(metric if metric is not None else 0.0)

    def state_dict(self) -> dict[str, Any]:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg, *, epochs: int, steps_per_epoch: int
) -> LRSchedule:
    """Build the scheduler named by ``cfg`` (a SchedulerConfig) for a run of ``epochs``."""
    spec = SCHEDULERS.get(cfg.name)
    group_lrs = [g["lr"] for g in optimizer.param_groups]
    if not isinstance(spec, SchedulerSpec):
        return LRSchedule(spec(optimizer, **cfg.kwargs), "epoch", steps_per_epoch)
    # Warm-up (per-epoch schedulers only) is counted in whole epochs; the main schedule
    # covers the epochs after it.
    warmup_steps = math.ceil(cfg.warmup_epochs)
    main_epochs = max(1, epochs - warmup_steps)
    ctx = Context(
        epochs=main_epochs, steps_per_epoch=steps_per_epoch, group_lrs=group_lrs, base_lr=group_lrs[0]
    )
    kwargs = {**spec.defaults(ctx), **cfg.kwargs}
    ratios = [lr / cfg_lr(optimizer) for lr in group_lrs]
    for key in PER_GROUP_LR_ARGS:
        if (
            key in cfg.kwargs
            and isinstance(cfg.kwargs[key], (int, float))
            and spec.cls in (lrs.CyclicLR, lrs.OneCycleLR)
        ):
            kwargs[key] = [float(cfg.kwargs[key]) * r for r in ratios]
    if "lr_lambda" in kwargs:
        factory = LR_LAMBDAS.get(str(kwargs.pop("lr_lambda")))
        kwargs["lr_lambda"] = factory(main_epochs, **kwargs.pop("lambda_kwargs", {}))
    scheduler = spec.cls(optimizer, **kwargs)
    if warmup_steps:
        warm = lrs.LinearLR(optimizer, start_factor=cfg.warmup_start_factor, total_iters=warmup_steps)
        scheduler = lrs.SequentialLR(optimizer, [warm, scheduler], milestones=[warmup_steps])
    return LRSchedule(scheduler, spec.policy, steps_per_epoch)


def cfg_lr(optimizer: torch.optim.Optimizer) -> float:
    """The recipe's base LR, kept in ``optimizer.defaults``."""
    return float(optimizer.defaults["lr"])
