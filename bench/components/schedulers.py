"""LR schedulers: all ten ``torch.optim.lr_scheduler`` kinds, each with the step policy it needs
(per epoch, per batch, per batch with fractional epochs, or on the validation metric) and
defaults derived from the training length.

Defaults never change what the recipe does not name: OneCycle and Cyclic leave momentum alone
(torch's ``cycle_momentum=True`` would switch momentum on for plain SGD and override AdamW's β1)
unless the recipe sets ``cycle_momentum``; cosine warm restarts end their last cycle at the last
epoch. Absolute LR arguments (``eta_min``, ``min_lr``, ``base_lr``, ``max_lr``) are for the recipe's
base LR: each param group gets them times its ``lr_scale``, so the per-layer ratios hold.
``interval: step`` anneals a per-epoch schedule per optimizer step over the same epochs. Warm-up is
applied by ``LRSchedule`` (bench/components/lr_schedule.py) per step.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch.optim import lr_scheduler as lrs

from bench.components.lr_lambdas import LR_LAMBDAS, per_step
from bench.components.lr_schedule import LRSchedule
from bench.components.registry import Registry
from bench.components.signature import check_kwargs

Policy = Literal["epoch", "batch", "batch_fractional", "plateau"]


@dataclass(frozen=True)
class Context:
    """What a scheduler's defaults may depend on."""

    epochs: int
    steps_per_epoch: int
    group_lrs: list[float]

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


@dataclass(frozen=True)
class SchedulerSpec:
    cls: type
    policy: Policy
    defaults: Callable[[Context], dict[str, Any]]
    warmup: bool = True  # can be composed with the linear per-step warm-up
    # kwargs in epochs -> the same schedule in optimizer steps (None: no per-step form)
    per_step: Callable[[dict[str, Any], int], dict[str, Any]] | None = None


def _lambda_defaults(default_name: str) -> Callable[[Context], dict[str, Any]]:
    return lambda ctx: {"lr_lambda": default_name}


def _scaled(ctx: Context, factor: float) -> list[float]:
    return [lr * factor for lr in ctx.group_lrs]


def restart_period(epochs: int) -> int:
    """Default T_0: a divisor of the run, so the last cycle ends at the last epoch (weights are
    evaluated at the bottom of a cycle, never just after a restart), and never under 2 epochs (a
    restart every epoch is no cosine at all). The rule: the largest divisor from 2 up to a third
    of the run (3 or more cycles); else the largest up to half of it (2 cycles); else the whole run
    as one cycle (prime epoch counts, and runs under 4 epochs)."""
    for most in (epochs // 3, epochs // 2):
        divisors = [d for d in range(2, most + 1) if epochs % d == 0]
        if divisors:
            return max(divisors)
    return max(1, epochs)


def _floors(optimizer: torch.optim.Optimizer, eta_min: float | list[float]) -> list[float]:
    return list(eta_min) if isinstance(eta_min, (list, tuple)) else [eta_min] * len(optimizer.param_groups)


class _PerGroupFloor:
    """torch's cosine schedulers take one ``eta_min`` for every param group, so a floor meant for
    the recipe's base LR would lift the groups below it (layer_decay) and undo the per-layer ratios.
    This runs torch's own formula once per distinct floor and gives each group its own: a group
    whose floor is the recipe's value gets exactly torch's numbers."""

    eta_mins: list[float]

    def _per_floor(self, compute: Callable[[], list[float]]) -> list[float]:
        by_floor = {}
        for floor in dict.fromkeys(self.eta_mins):
            self.eta_min = floor
            by_floor[floor] = compute()
        return [by_floor[floor][i] for i, floor in enumerate(self.eta_mins)]

    def get_lr(self) -> list[float]:
        return self._per_floor(super().get_lr)


class CosineAnnealingLR(_PerGroupFloor, lrs.CosineAnnealingLR):
    """``torch.optim.lr_scheduler.CosineAnnealingLR`` whose ``eta_min`` may be one per param group."""

    def __init__(self, optimizer: torch.optim.Optimizer, T_max: int, eta_min: float | list[float] = 0.0,
                 last_epoch: int = -1) -> None:  # fmt: skip
        self.eta_mins = _floors(optimizer, eta_min)
        super().__init__(optimizer, T_max, self.eta_mins[0], last_epoch)

    def _get_closed_form_lr(self) -> list[float]:
        return self._per_floor(super()._get_closed_form_lr)


class CosineAnnealingWarmRestarts(_PerGroupFloor, lrs.CosineAnnealingWarmRestarts):
    """``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts`` whose ``eta_min`` may be one per
    param group."""

    def __init__(self, optimizer: torch.optim.Optimizer, T_0: int, T_mult: int = 1,
                 eta_min: float | list[float] = 0.0, last_epoch: int = -1) -> None:  # fmt: skip
        self.eta_mins = _floors(optimizer, eta_min)
        super().__init__(optimizer, T_0, T_mult, self.eta_mins[0], last_epoch)


def _lambda_per_step(kw: dict[str, Any], spe: int) -> dict[str, Any]:
    return {**kw, "lr_lambda": functools.partial(per_step, kw["lr_lambda"], spe)}


SCHEDULERS: Registry[SchedulerSpec] = Registry("scheduler")
SCHEDULERS.register(
    "constant", SchedulerSpec(lrs.LambdaLR, "epoch", _lambda_defaults("constant"), per_step=_lambda_per_step)
)
SCHEDULERS.register(
    "lambda",
    SchedulerSpec(lrs.LambdaLR, "epoch", _lambda_defaults("linear_decay"), per_step=_lambda_per_step),
)
SCHEDULERS.register(
    "multiplicative", SchedulerSpec(lrs.MultiplicativeLR, "epoch", _lambda_defaults("constant_factor"))
)
SCHEDULERS.register(
    "step",
    SchedulerSpec(
        lrs.StepLR, "epoch", lambda c: {"step_size": max(1, c.epochs // 3)},
        per_step=lambda kw, spe: {**kw, "step_size": kw["step_size"] * spe},
    ),
)  # fmt: skip
SCHEDULERS.register(
    "multistep",
    SchedulerSpec(
        lrs.MultiStepLR, "epoch",
        lambda c: {"milestones": sorted({max(1, c.epochs // 2), max(1, 3 * c.epochs // 4)})},
        per_step=lambda kw, spe: {**kw, "milestones": [m * spe for m in kw["milestones"]]},
    ),
)  # fmt: skip
SCHEDULERS.register(
    "exponential",
    SchedulerSpec(
        lrs.ExponentialLR, "epoch", lambda c: {"gamma": 0.9},
        per_step=lambda kw, spe: {**kw, "gamma": kw["gamma"] ** (1.0 / spe)},
    ),
)  # fmt: skip
SCHEDULERS.register(
    "cosine",
    SchedulerSpec(
        CosineAnnealingLR, "epoch", lambda c: {"T_max": max(1, c.epochs)},
        per_step=lambda kw, spe: {**kw, "T_max": kw["T_max"] * spe},
    ),
)  # fmt: skip
SCHEDULERS.register(
    "plateau", SchedulerSpec(lrs.ReduceLROnPlateau, "plateau", lambda c: {"mode": "max", "patience": 2})
)
SCHEDULERS.register(
    "cyclic",
    SchedulerSpec(
        lrs.CyclicLR, "batch",
        lambda c: {"base_lr": _scaled(c, 0.1), "max_lr": list(c.group_lrs),
                   "step_size_up": max(1, c.total_steps // 4), "cycle_momentum": False},
        warmup=False,  # cycles up from base_lr by itself
    ),
)  # fmt: skip
SCHEDULERS.register(
    "onecycle",
    SchedulerSpec(
        lrs.OneCycleLR, "batch",
        lambda c: {"max_lr": list(c.group_lrs), "total_steps": max(1, c.total_steps), "cycle_momentum": False},
        warmup=False,  # its first phase (pct_start) is the warm-up
    ),
)  # fmt: skip
SCHEDULERS.register(
    "cosine_warm_restarts",
    SchedulerSpec(
        CosineAnnealingWarmRestarts, "batch_fractional", lambda c: {"T_0": restart_period(c.epochs)}
    ),
)

# Absolute LRs given as one number, meant for the recipe's base LR: each param group gets the number
# times its ``lr_scale`` (head_lr_mult, layer_decay), so floors and peaks keep the per-layer ratios.
PER_GROUP_LR_ARGS = ("base_lr", "max_lr", "eta_min", "min_lr")


def check_scheduler(name: str, kwargs: dict[str, Any], *, warmup: bool, interval: str = "epoch") -> None:
    spec = SCHEDULERS.get(name)
    if not isinstance(spec, SchedulerSpec):  # a user class by import path: treat as per-epoch
        check_kwargs(spec, kwargs, what=f"scheduler '{name}'", skip=("optimizer",))
        if interval == "step":
            raise ValueError(f"interval 'step' needs a built-in per-epoch scheduler, not '{name}'")
        return
    own = {k: v for k, v in kwargs.items() if k not in ("lr_lambda", "lambda_kwargs")}
    check_kwargs(spec.cls, own, what=f"scheduler '{name}'", skip=("optimizer", "lr_lambda"))
    if "lr_lambda" in kwargs or "lambda_kwargs" in kwargs:
        if spec.cls not in (lrs.LambdaLR, lrs.MultiplicativeLR):
            raise ValueError(f"scheduler '{name}' does not take lr_lambda; only lambda and multiplicative do")
        LR_LAMBDAS.get(str(kwargs.get("lr_lambda", "constant")))
    if warmup and not spec.warmup:
        raise ValueError(
            f"warmup_epochs is not supported with scheduler '{name}': it ramps up by itself; set it to 0"
        )
    if interval == "step" and (spec.policy != "epoch" or spec.per_step is None):
        allowed = ", ".join(n for n in SCHEDULERS.names() if getattr(SCHEDULERS.get(n), "per_step", None))
        raise ValueError(
            f"interval 'step' is for per-epoch schedulers that anneal smoothly ({allowed}); "
            f"'{name}' {STEPS_IN_WORDS.get(spec.policy, spec.policy)}"
        )


# Why interval 'step' does not apply, by step policy ('is stepped batch' read as a typo).
STEPS_IN_WORDS = {
    "batch": "steps per batch already",
    "batch_fractional": "steps per batch already (in fractional epochs)",
    "plateau": "steps on the validation metric, once per epoch",
    "epoch": "steps per epoch and has no smooth per-step form",
}


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg, *, epochs: int, steps_per_epoch: int
) -> LRSchedule:
    """Build the scheduler named by ``cfg`` (a SchedulerConfig) for a run of ``epochs``."""
    spec = SCHEDULERS.get(cfg.name)
    group_lrs = [g["lr"] for g in optimizer.param_groups]
    warmup_steps = round(cfg.warmup_epochs * steps_per_epoch)
    warm = dict(warmup_steps=warmup_steps, warmup_start=cfg.warmup_start_factor)
    if not isinstance(spec, SchedulerSpec):
        return LRSchedule(spec(optimizer, **cfg.kwargs), "epoch", steps_per_epoch, **warm)
    ctx = Context(epochs=epochs, steps_per_epoch=steps_per_epoch, group_lrs=group_lrs)
    kwargs = {**spec.defaults(ctx), **cfg.kwargs}
    scales = group_scales(optimizer)
    for key in PER_GROUP_LR_ARGS:
        value = cfg.kwargs.get(key)
        if isinstance(value, (int, float)):
            kwargs[key] = [float(value) * s for s in scales]
    if "lr_lambda" in kwargs:
        factory = LR_LAMBDAS.get(str(kwargs.pop("lr_lambda")))
        kwargs["lr_lambda"] = factory(epochs, **kwargs.pop("lambda_kwargs", {}))
    policy = spec.policy
    if cfg.interval == "step":
        kwargs, policy = spec.per_step(kwargs, steps_per_epoch), "batch"
    return LRSchedule(spec.cls(optimizer, **kwargs), policy, steps_per_epoch, **warm)


# torch scheduler arguments that take one value per param group as a list
PER_GROUP = frozenset({"max_lr", "base_lr", "max_momentum", "base_momentum", "min_lr"})


def try_scheduler(optimizer_cfg, cfg, *, epochs: int, steps_per_epoch: int = 100) -> None:
    """Build ``cfg``'s scheduler over a dummy optimizer. torch checks argument values (a
    ``milestones`` that is no list, a negative ``T_max``) only in the constructor: unchecked, a bad
    value failed every run of the recipe inside its recorded run. The real steps per epoch depend
    on the data; any plausible number builds the same classes."""
    from bench.components.optimizers import try_optimizer

    optimizer = try_optimizer(optimizer_cfg)
    # a per-group value given as a list (OneCycleLR's max_lr for per-layer LR groups) needs as many
    # groups as it has values: one dummy group would refuse a valid list
    lists = [len(v) for k, v in cfg.kwargs.items() if k in PER_GROUP and isinstance(v, (list, tuple))]
    for _ in range(max(lists, default=1) - 1):
        optimizer.add_param_group({"params": [torch.zeros(1, requires_grad=True)]})
    try:
        build_scheduler(optimizer, cfg, epochs=epochs, steps_per_epoch=steps_per_epoch)
    except Exception as exc:  # noqa: BLE001 - a user's scheduler class may raise anything
        given = ", ".join(f"{k}={v!r}" for k, v in cfg.kwargs.items()) or "its defaults"
        raise ValueError(f"scheduler '{cfg.name}' refuses {given}: {type(exc).__name__}: {exc}") from None


def group_scales(optimizer: torch.optim.Optimizer) -> list[float]:
    """Each param group's LR relative to the recipe's: its ``lr_scale`` (set by
    ``build_param_groups``), else its LR over the base LR for groups built elsewhere."""
    return [float(g.get("lr_scale", g["lr"] / cfg_lr(optimizer))) for g in optimizer.param_groups]


def cfg_lr(optimizer: torch.optim.Optimizer) -> float:
    """The recipe's base LR, kept in ``optimizer.defaults``."""
    return float(optimizer.defaults["lr"])
