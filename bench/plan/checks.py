"""Warnings ``bench plan`` raises: combinations known to be wrong or misleading, found from the
recipe alone (``before``) or from the schedule the engine actually stepped (``after``)."""

from __future__ import annotations

import pandas as pd
from torch.optim import lr_scheduler as lrs

from bench.components.schedulers import restart_period

RATIO_FLOOR = 1e-3  # a param group whose LR is below this fraction of the largest is ~frozen
COLLAPSE = 1e-4  # an LR below this fraction of its start counts as ~0


def restarts_end_mid_cycle(epochs: int, t0: int, t_mult: int) -> bool:
    """Whether cosine warm restarts with (T_0, T_mult) end the run inside a cycle."""
    end, period = 0, t0
    while end < epochs:
        end += period
        period *= t_mult
    return end != epochs


def before(train, cuda: bool) -> list[str]:
    out = []
    from bench.measure.hardware import device_gap, native_bf16_cpu

    gap = device_gap(train, cuda)  # the engine's rule (hardware.precision_gap), without a device
    on_cuda = cuda and train.device in ("auto", "cuda") or train.device.startswith("cuda")
    bf16_on_cpu = train.precision == "amp_bf16" and not on_cuda
    if gap and not bf16_on_cpu:
        out.append(f"`bench run` records this variant as skipped here: {gap}")
    if bf16_on_cpu and not native_bf16_cpu():
        from bench.measure.hardware import emulated_bf16_policy

        then = ("`bench run` trains it emulated (--emulated-bf16 run)" if emulated_bf16_policy() == "run"
                else "`bench run` records it as skipped unless --emulated-bf16 run")  # fmt: skip
        out.append("amp_bf16 on this CPU is emulated (no avx512_bf16/AMX): 20-40x slower than fp32, and its "
                   f"throughput measures the emulation; {then}")  # fmt: skip
    sched = train.scheduler
    if sched.warmup_epochs >= train.epochs:
        out.append(f"warm-up ({sched.warmup_epochs:g} epochs) is as long as or longer than training "
                   f"({train.epochs} epochs): the main schedule never runs")  # fmt: skip
    if sched.name == "cosine_warm_restarts":
        kw = sched.kwargs  # T_0 left out: the default the engine takes
        t0, t_mult = int(kw.get("T_0", restart_period(train.epochs))), int(kw.get("T_mult", 1))
        if restarts_end_mid_cycle(train.epochs, t0, t_mult):
            out.append(f"cosine_warm_restarts with T_0={t0}, T_mult={t_mult} ends mid-cycle: "
                       f"the last epochs run at a high LR right after a restart and the final weights are evaluated "
                       "there")  # fmt: skip
        if t0 < 2 and t_mult == 1 and train.epochs > t0:
            out.append(f"cosine_warm_restarts with T_0={t0} restarts every epoch: the LR jumps back to its peak "
                       f"{train.epochs} times and never anneals for long; set T_0 >= 2 (the default for "
                       f"{train.epochs} epochs is {restart_period(train.epochs)})")  # fmt: skip
    if train.swa is not None and sched.name == "plateau":
        out.append("SWA with ReduceLROnPlateau: SWALR takes over the LR from swa.start_epoch")
    return out


def groups(names: list[str], start: list[float], layer_decay: float, stages: int) -> list[str]:
    out = []
    top = max(start)
    for name, lr in zip(names, start):
        if lr < RATIO_FLOOR * top:
            out.append(f"param group '{name}' starts at LR {lr:.3g}, {lr / top:.1e} of the largest ({top:.3g}): "
                       "per-layer ratios (layer_decay ** depth, head_lr_mult) leave it effectively frozen")  # fmt: skip
    if layer_decay < 1.0 and layer_decay**stages < RATIO_FLOOR:
        out.append(f"layer_decay {layer_decay:g} over {stages} stages gives the stem {layer_decay**stages:.1e} "
                   "of the head's LR")  # fmt: skip
    return out


def swa_above_peak(train, frame: pd.DataFrame, scales: dict[str, float]) -> list[str]:
    """An absolute ``swa.lr`` is the same number for every optimizer on a matrix axis: above a
    variant's peak LR it raises the LR for the averaging phase instead of lowering it."""
    swa = train.swa
    if swa is None or swa.lr is None:
        return []
    before_swa = frame[frame["epoch"] < swa.start_epoch]
    base = before_swa["lr"] / before_swa["param_group"].map(scales)  # each group's LR as the base LR's
    peak = max(float(train.optimizer.lr), float(base.max()) if len(base) else 0.0)
    if swa.lr <= peak * (1 + 1e-9):
        return []
    return [f"swa.lr {swa.lr:g} is {swa.lr / peak:.3g}x this variant's peak LR ({peak:.3g}): SWA raises every "
            f"param group's LR instead of lowering it; give swa.lr_factor (relative to the base LR) to mean "
            "the same for every optimizer"]  # fmt: skip


def rises_above_peak(frame: pd.DataFrame, warmup_steps: int, spe: int, swa_start_step: int | None, *,
                     until: int | None = None) -> list[str]:  # fmt: skip
    """Param groups whose LR climbs above their own earlier peak once the warm-up is over: a
    schedule that climbs (a step scheduler with gamma > 1, a restart to more than the start), SWA
    started before the schedule reached its peak, an absolute swa.lr above a group's LR. The
    warm-up is the configured one plus any rise the schedule itself starts with (OneCycle,
    CyclicLR): a group is looked at from the first fall of its LR, from SWA's start, or once its
    LR has stayed put for more than an epoch (a constant one). ``until``: steps from there on are
    not looked at (another warning covers them). One warning for all the groups it finds."""
    found = []
    for name, rows in frame.groupby("param_group", sort=False):
        rows = rows.sort_values("step")
        lr, epochs, steps = rows["lr"].to_numpy(), rows["epoch"].to_numpy(), rows["step"].to_numpy()
        peak, checking, flat = (lr[0] if len(lr) else 0.0), False, 0
        for t in range(1, len(lr)):
            if until is not None and steps[t] >= until:
                break
            if not checking and steps[t] >= warmup_steps:
                flat = flat + 1 if lr[t] == lr[t - 1] else 0
                swa = swa_start_step is not None and steps[t] >= swa_start_step
                checking = lr[t] < lr[t - 1] or flat > spe or swa
            if checking and lr[t] > peak * (1 + 1e-6):
                found.append((name, lr[t], int(epochs[t]), int(steps[t]), peak))
                break
            peak = max(peak, lr[t])
    if not found:
        return []
    name, lr, epoch, step, peak = found[0]
    groups = ", ".join(f"'{f[0]}'" for f in found)
    return [f"the LR of param group(s) {groups} rises above the group's earlier peak after the warm-up or "
            f"SWA's start (first: '{name}' to {lr:.3g} at epoch {epoch}, step {step}, {lr / peak:.3g}x its "
            f"peak {peak:.3g}): training is pushed back up instead of annealing"]  # fmt: skip


def schedulers_in(obj, seen=None) -> list:
    """Every torch LR scheduler inside ``obj`` (SequentialLR/ChainedScheduler/user wrappers)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    kinds = (lrs.LRScheduler, lrs.ReduceLROnPlateau)
    held = [
        i for v in getattr(obj, "__dict__", {}).values() for i in (v if isinstance(v, list | tuple) else [v])
    ]
    found = [obj] if isinstance(obj, kinds) else []
    return found + [s for i in held if isinstance(i, kinds) for s in schedulers_in(i, seen)]


def after(schedule, frame: pd.DataFrame, start: dict[str, float], error: Exception | None, step: int,
          total: int, spe: int) -> list[str]:  # fmt: skip
    out = []
    onecycles = [s for s in schedulers_in(schedule.scheduler) if isinstance(s, lrs.OneCycleLR)]
    if onecycles and schedule.policy == "epoch":
        out.append(f"OneCycleLR is stepped once per epoch here: its cycle of total_steps={onecycles[0].total_steps} "
                   "steps is meant per batch; use scheduler 'onecycle'")  # fmt: skip
    if error is not None:
        out.append(f"the schedule fails at step {step} of {total} (epoch {step // max(spe, 1)}): {error}")
    for oc in onecycles:
        if error is None and oc.last_epoch < 0.95 * oc.total_steps:
            out.append(f"OneCycleLR covers total_steps={oc.total_steps} but is stepped only {oc.last_epoch} times: "
                       f"the cycle is cut off at {oc.last_epoch / oc.total_steps:.0%} and never anneals")  # fmt: skip
    for name, lr0 in start.items():
        series = frame.loc[frame["param_group"] == name, "lr"]
        if len(series) and lr0 > 0 and (series < COLLAPSE * lr0).mean() > 0.5:
            out.append(f"param group '{name}': the LR stays below {COLLAPSE:g}x its start for "
                       f"{(series < COLLAPSE * lr0).mean():.0%} of the steps (schedule collapses to ~0)")  # fmt: skip
    return out
