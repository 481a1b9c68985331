"""LR schedulers: every ``torch.optim.lr_scheduler`` kind, each with the step policy it needs
(per epoch, per batch, per batch with fractional epochs, or on the validation metric) and
defaults derived from the training length.

``sequential`` and ``chained`` (SequentialLR, ChainedScheduler) take their schedulers as a list of
``{name: ..., <args>}`` entries built by the same rules: a child of ``sequential`` gets the
defaults of its own stretch of epochs (a cosine after a 2-epoch warm-up anneals over the epochs
left), a child of ``chained`` those of the whole run. Children must step alike (all per epoch,
or all per batch) because the composite steps them together.

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
    composite: bool = False  # takes a list of schedulers (SequentialLR, ChainedScheduler)


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


def _in_steps(key: str, default: int | None = None) -> Callable[[dict[str, Any], int], dict[str, Any]]:
    """``per_step`` for a schedule whose length argument ``key`` is in epochs: the same length in steps."""
    return lambda kw, spe: {**kw, key: kw.get(key, default) * spe}


SCHEDULERS: Registry[SchedulerSpec] = Registry("scheduler", {
    "constant": SchedulerSpec(lrs.LambdaLR, "epoch", lambda c: {"lr_lambda": "constant"},
                              per_step=_lambda_per_step),
    "lambda": SchedulerSpec(lrs.LambdaLR, "epoch", lambda c: {"lr_lambda": "linear_decay"},
                            per_step=_lambda_per_step),
    "multiplicative": SchedulerSpec(lrs.MultiplicativeLR, "epoch", lambda c: {"lr_lambda": "constant_factor"}),
    "step": SchedulerSpec(lrs.StepLR, "epoch", lambda c: {"step_size": max(1, c.epochs // 3)},
                          per_step=_in_steps("step_size")),
    "multistep": SchedulerSpec(
        lrs.MultiStepLR, "epoch",
        lambda c: {"milestones": sorted({max(1, c.epochs // 2), max(1, 3 * c.epochs // 4)})},
        per_step=lambda kw, spe: {**kw, "milestones": [m * spe for m in kw["milestones"]]},
    ),
    "exponential": SchedulerSpec(lrs.ExponentialLR, "epoch", lambda c: {"gamma": 0.9},
                                 per_step=lambda kw, spe: {**kw, "gamma": kw["gamma"] ** (1.0 / spe)}),
    "cosine": SchedulerSpec(CosineAnnealingLR, "epoch", lambda c: {"T_max": max(1, c.epochs)},
                            per_step=_in_steps("T_max")),
    # LinearLR and PolynomialLR: total_iters defaults to the whole run
    "linear": SchedulerSpec(lrs.LinearLR, "epoch", lambda c: {"total_iters": max(1, c.epochs)},
                            per_step=_in_steps("total_iters")),
    "polynomial": SchedulerSpec(lrs.PolynomialLR, "epoch", lambda c: {"total_iters": max(1, c.epochs)},
                                per_step=_in_steps("total_iters")),
    # torch's ConstantLR: a factor for the first total_iters epochs ("constant" is no change)
    "constant_lr": SchedulerSpec(lrs.ConstantLR, "epoch", lambda c: {}, per_step=_in_steps("total_iters", 5)),
    "sequential": SchedulerSpec(lrs.SequentialLR, "epoch", lambda c: {}, composite=True),
    "chained": SchedulerSpec(lrs.ChainedScheduler, "epoch", lambda c: {}, composite=True),
    "plateau": SchedulerSpec(lrs.ReduceLROnPlateau, "plateau", lambda c: {"mode": "max", "patience": 2}),
    "cyclic": SchedulerSpec(
        lrs.CyclicLR, "batch",
        lambda c: {"base_lr": [lr * 0.1 for lr in c.group_lrs], "max_lr": list(c.group_lrs),
                   "step_size_up": max(1, c.total_steps // 4), "cycle_momentum": False},
        warmup=False,  # cycles up from base_lr by itself
    ),
    "onecycle": SchedulerSpec(
        lrs.OneCycleLR, "batch",
        lambda c: {"max_lr": list(c.group_lrs), "total_steps": max(1, c.total_steps), "cycle_momentum": False},
        warmup=False,  # its first phase (pct_start) is the warm-up
    ),
    "cosine_warm_restarts": SchedulerSpec(CosineAnnealingWarmRestarts, "batch_fractional",
                                          lambda c: {"T_0": restart_period(c.epochs)}),
})  # fmt: skip

# Absolute LRs given as one number, meant for the recipe's base LR: each param group gets the number
# times its ``lr_scale`` (head_lr_mult, layer_decay), so floors and peaks keep the per-layer ratios.
PER_GROUP_LR_ARGS = ("base_lr", "max_lr", "eta_min", "min_lr")


def check_scheduler(name: str, kwargs: dict[str, Any], *, warmup: bool, interval: str = "epoch") -> None:
    spec = SCHEDULERS.get(name)
    if not isinstance(spec, SchedulerSpec):  # a user class by import path: treat as per-epoch
        composite = {lrs.SequentialLR: "sequential", lrs.ChainedScheduler: "chained"}.get(spec)
        if composite:  # its schedulers must be built on the run's optimizer, which a recipe cannot name
            raise ValueError(f"name it '{composite}', with schedulers: a list of {{name: ..., <args>}}, "
                             f"e.g. {COMPOSITE_EXAMPLE}")  # fmt: skip
        check_kwargs(spec, kwargs, what=f"scheduler '{name}'", skip=("optimizer",))
        if interval == "step":
            raise ValueError(f"interval 'step' needs a built-in per-epoch scheduler, not '{name}'")
        return
    if spec.composite:
        _check_composite(name, spec, kwargs, warmup=warmup, interval=interval)
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


COMPOSITE_EXAMPLE = "[{name: linear, start_factor: 0.1, total_iters: 2}, {name: cosine}]"


def children_of(name: str, kwargs: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """A composite's ``schedulers`` entries as (name, arguments), refused unless well formed."""
    entries = kwargs.get("schedulers")
    if not isinstance(entries, list) or not entries:
        raise ValueError(
            f"scheduler '{name}' needs schedulers: a list of {{name: ..., <args>}}, e.g. {COMPOSITE_EXAMPLE}"
        )
    children = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ValueError(
                f"schedulers[{i}] of scheduler '{name}' must be a mapping with a name, got {entry!r}"
            )
        own = {k: v for k, v in entry.items() if k != "name"}
        misplaced = sorted(set(own) & {"warmup_epochs", "warmup_start_factor", "interval"})
        if misplaced:
            raise ValueError(f"schedulers[{i}] of scheduler '{name}': set {', '.join(misplaced)} on the scheduler "
                             "itself, not on one of its schedulers")  # fmt: skip
        children.append((entry["name"], own))
    return children


def _check_composite(
    name: str, spec: SchedulerSpec, kwargs: dict[str, Any], *, warmup: bool, interval: str
) -> None:
    check_kwargs(spec.cls, kwargs, what=f"scheduler '{name}'", skip=("optimizer",))
    children = children_of(name, kwargs)
    policies = set()
    for i, (child, own) in enumerate(children):
        child_spec = SCHEDULERS.get(child)
        if isinstance(child_spec, SchedulerSpec) and child_spec.composite:
            raise ValueError(f"schedulers[{i}] of scheduler '{name}' is '{child}': composites do not nest")
        try:
            check_scheduler(child, own, warmup=warmup, interval=interval)
        except ValueError as exc:
            raise ValueError(f"schedulers[{i}] of scheduler '{name}': {exc}") from None
        policy = child_spec.policy if isinstance(child_spec, SchedulerSpec) else "epoch"
        policies.add("batch" if interval == "step" else policy)
    if not policies <= {"epoch", "batch"} or len(policies) > 1:
        raise ValueError(
            f"the schedulers of '{name}' are stepped together, so they must all step per epoch or all per batch; "
            f"these step {' and '.join(STEPPED_AS[p] for p in sorted(policies))}"
        )
    if spec.cls is lrs.SequentialLR:
        milestones = kwargs.get("milestones")
        if not (isinstance(milestones, list) and all(isinstance(m, int) and m > 0 for m in milestones)
                and milestones == sorted(set(milestones)) and len(milestones) == len(children) - 1):  # fmt: skip
            raise ValueError(
                f"scheduler 'sequential' needs milestones: {len(children) - 1} increasing epoch number(s) > 0, "
                f"where each of its {len(children)} schedulers hands over to the next; got {milestones!r}"
            )


STEPPED_AS = {"epoch": "per epoch", "batch": "per batch", "batch_fractional": "per batch, in fractional epochs",
              "plateau": "on the validation metric"}  # fmt: skip


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
    scheduler, policy = _build(optimizer, cfg.name, cfg.kwargs, epochs=epochs, steps_per_epoch=steps_per_epoch,
                               interval=cfg.interval)  # fmt: skip
    return LRSchedule(scheduler, policy, steps_per_epoch, warmup_steps=round(cfg.warmup_epochs * steps_per_epoch),
                      warmup_start=cfg.warmup_start_factor)  # fmt: skip


def _build(optimizer: torch.optim.Optimizer, name: str, given: dict[str, Any], *, epochs: int,
           steps_per_epoch: int, interval: str) -> tuple[Any, Policy]:  # fmt: skip
    """The torch scheduler for ``name`` over ``epochs``, and how it is stepped."""
    spec = SCHEDULERS.get(name)
    if not isinstance(spec, SchedulerSpec):
        return spec(optimizer, **given), "epoch"
    if spec.composite:
        return _build_composite(optimizer, spec, name, given, epochs=epochs, steps_per_epoch=steps_per_epoch,
                                interval=interval)  # fmt: skip
    ctx = Context(epochs, steps_per_epoch, group_lrs=[g["lr"] for g in optimizer.param_groups])
    kwargs = {**spec.defaults(ctx), **given}
    scales = group_scales(optimizer)
    for key in PER_GROUP_LR_ARGS:
        if isinstance(given.get(key), (int, float)):
            kwargs[key] = [float(given[key]) * s for s in scales]
    if "lr_lambda" in kwargs:
        factory = LR_LAMBDAS.get(str(kwargs.pop("lr_lambda")))
        kwargs["lr_lambda"] = factory(epochs, **kwargs.pop("lambda_kwargs", {}))
    policy = spec.policy
    if interval == "step":
        kwargs, policy = spec.per_step(kwargs, steps_per_epoch), "batch"
    return spec.cls(optimizer, **kwargs), policy


def _build_composite(optimizer: torch.optim.Optimizer, spec: SchedulerSpec, name: str, given: dict[str, Any], *,
                     epochs: int, steps_per_epoch: int, interval: str) -> tuple[Any, Policy]:  # fmt: skip
    children = children_of(name, given)
    sequential = spec.cls is lrs.SequentialLR
    milestones = list(given.get("milestones") or []) if sequential else []
    # a child of sequential gets the defaults of its own stretch (a cosine after a warm-up anneals
    # over the epochs left); a child of chained runs the whole time
    bounds = [0, *milestones, epochs]
    lengths = [max(1, b - a) for a, b in zip(bounds, bounds[1:])] if sequential else [epochs] * len(children)
    built = [
        _build(optimizer, child, own, epochs=length, steps_per_epoch=steps_per_epoch, interval=interval)
        for (child, own), length in zip(children, lengths)
    ]
    policy = built[0][1]
    schedulers = [s for s, _ in built]
    if not sequential:
        return lrs.ChainedScheduler(schedulers, optimizer=optimizer), policy
    per = steps_per_epoch if policy == "batch" else 1  # milestones are in epochs, the steps may be batches
    rest = {k: v for k, v in given.items() if k not in ("schedulers", "milestones")}
    return lrs.SequentialLR(optimizer, schedulers, [m * per for m in milestones], **rest), policy


def ramp_epochs(name: str, kwargs: dict[str, Any]) -> int:
    """Epochs a schedule holds the LR below its value by design before it hands over (ConstantLR's
    factor, LinearLR rising, a sequential whose first stretch is one of them): a rise after them is
    the schedule's own warm-up, which ``bench plan`` must not call a schedule climbing back up."""
    spec = SCHEDULERS.get(name)
    if not isinstance(spec, SchedulerSpec):
        return 0
    if spec.cls is lrs.ConstantLR:
        return int(kwargs.get("total_iters", 5)) if float(kwargs.get("factor", 1 / 3)) < 1 else 0
    if spec.cls is lrs.LinearLR and float(kwargs.get("start_factor", 1 / 3)) < float(
        kwargs.get("end_factor", 1)
    ):
        return int(kwargs.get("total_iters", 0))
    children = (
        kwargs.get("schedulers") if spec.composite and isinstance(kwargs.get("schedulers"), list) else []
    )
    ramps = [
        ramp_epochs(c["name"], c) for c in children if isinstance(c, dict) and isinstance(c.get("name"), str)
    ]
    if spec.cls is lrs.SequentialLR and ramps and ramps[0] and kwargs.get("milestones"):
        return int(kwargs["milestones"][0])
    return max(ramps, default=0) if spec.cls is lrs.ChainedScheduler else 0


# torch scheduler arguments that take one value per param group as a list
PER_GROUP = frozenset({"max_lr", "base_lr", "max_momentum", "base_momentum", "min_lr"})


def try_scheduler(optimizer_cfg, cfg, *, epochs: int, steps_per_epoch: int = 100) -> None:
    """Build ``cfg``'s scheduler over a dummy optimizer. torch checks argument values (a
    ``milestones`` that is no list, a negative ``T_max``) only in the constructor: unchecked, a bad
    value failed every run of the recipe inside its recorded run. The real steps per epoch depend
    on the data; any plausible number builds the same classes."""
    from bench.components.optimizers import try_optimizer

    check_scheduler(cfg.name, cfg.kwargs, warmup=cfg.warmup_epochs > 0, interval=cfg.interval)
    milestones = cfg.kwargs.get("milestones") if cfg.name == "sequential" else None
    if milestones and milestones[-1] >= epochs:
        raise ValueError(f"scheduler 'sequential': milestone {milestones[-1]} is not inside the run's {epochs} "
                         f"epoch(s), so schedulers[{len(milestones)}] would never run")  # fmt: skip
    optimizer = try_optimizer(optimizer_cfg)
    # a per-group value given as a list (OneCycleLR's max_lr for per-layer LR groups) needs as many
    # groups as it has values: one dummy group would refuse a valid list
    entries = [cfg.kwargs, *(c for c in cfg.kwargs.get("schedulers") or [] if isinstance(c, dict))]
    lists = [
        len(v) for kw in entries for k, v in kw.items() if k in PER_GROUP and isinstance(v, (list, tuple))
    ]
    for _ in range(max(lists, default=1) - 1):
        optimizer.add_param_group({"params": [torch.zeros(1, requires_grad=True)]})
    try:
        build_scheduler(optimizer, cfg, epochs=epochs, steps_per_epoch=steps_per_epoch)
    except Exception as exc:  # noqa: BLE001 - a user's scheduler class may raise anything
        given = ", ".join(f"{k}={v!r}" for k, v in cfg.kwargs.items()) or "its defaults"
        raise ValueError(f"scheduler '{cfg.name}' refuses {given}: {type(exc).__name__}: {exc}") from None


def group_scales(optimizer: torch.optim.Optimizer) -> list[float]:
    """Each param group's LR relative to the recipe's: its ``lr_scale`` (set by
    ``build_param_groups``), else its LR over the base LR (kept in ``optimizer.defaults``) for
    groups built elsewhere."""
    base = float(optimizer.defaults["lr"])
    return [float(g.get("lr_scale", g["lr"] / base)) for g in optimizer.param_groups]
