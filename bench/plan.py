"""``bench plan``: every variant's LR schedule, stepped without training, and warnings for
combinations known to be wrong.

For each variant (one per group: the seed does not change the schedule) the real model is
built from the recipe (no pretrained download, no weights file: the param-group structure is
what matters), frozen and given its optimizer, scheduler and SWA exactly as ``bench run`` does;
then the optimizer is stepped with no gradients (parameters do not move) and the schedule is
driven through ``LRSchedule.after_batch`` / ``after_epoch`` and SWA in the same order as
``bench/engine/loop.py``. The LR of every param group is recorded for every optimizer step (the
LR that step uses). ReduceLROnPlateau is fed a flat metric: the worst case, every reduction fires.
"""

from __future__ import annotations

import math
import warnings as pywarnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch.optim import lr_scheduler as lrs

from bench.errors import BenchError, RecipeError
from bench.recipe.load import LoadedRecipe, Variant

CIFAR10_TRAIN_PER_CLASS = 5000
RATIO_FLOOR = 1e-3  # a param group whose LR is below this fraction of the largest is ~frozen
COLLAPSE = 1e-4  # an LR below this fraction of its start counts as ~0
PLATEAU_METRIC = 0.0


@dataclass
class VariantPlan:
    group: str
    epochs: int
    steps_per_epoch: int
    lrs: pd.DataFrame  # step, epoch, batch, param_group, lr
    warnings: list[str] = field(default_factory=list)


# --- data size ---------------------------------------------------------------------------------


def train_size(data_cfg) -> int:
    """Training images the loop will see, without decoding the data set when it can be avoided."""
    if data_cfg.subset:
        return int(data_cfg.subset)
    n = None
    if data_cfg.name == "cifar10":
        n = CIFAR10_TRAIN_PER_CLASS * (len(data_cfg.classes) if data_cfg.classes else 10)
    elif data_cfg.name == "imagefolder":
        from bench.data.sources import list_split, split_dirs
        from bench.data.splits import resolve_root

        dirs = split_dirs(resolve_root(data_cfg), ("test", "val"))
        if dirs is not None:
            classes, items, _ = list_split(dirs[0])
            if data_cfg.classes:
                wanted = {
                    c if isinstance(c, str) else classes[c]
                    for c in data_cfg.classes
                    if isinstance(c, str) or c < len(classes)
                }
                items = [it for it in items if it[0] in wanted]
            n = len(items)
    if n is None:
        from bench.data.splits import load_splits

        return len(load_splits(data_cfg).train)
    val = data_cfg.val_size
    n_val = round(val * n) if isinstance(val, float) else int(val)
    return n - n_val


def steps_per_epoch(data_cfg, override: int | None = None) -> int:
    """As ``DeviceLoader``: drop the last partial batch unless the data is a single batch."""
    if override:
        return int(override)
    n = train_size(data_cfg)
    bs = data_cfg.batch_size
    return n // bs if n > bs else max(1, math.ceil(n / bs))


# --- stepping ----------------------------------------------------------------------------------


def _schedulers_in(obj, seen=None) -> list:
    """Every torch LR scheduler inside ``obj`` (SequentialLR/ChainedScheduler/user wrappers)."""
    seen = seen if seen is not None else set()
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    found = [obj] if isinstance(obj, (lrs.LRScheduler, lrs.ReduceLROnPlateau)) else []
    values = list(vars(obj).values()) if hasattr(obj, "__dict__") else []
    for v in values:
        for item in v if isinstance(v, (list, tuple)) else [v]:
            if isinstance(item, (lrs.LRScheduler, lrs.ReduceLROnPlateau)):
                found += _schedulers_in(item, seen)
    return found


def _plan_model(variant: Variant, num_classes: int):
    from bench.components.models import build_model

    cfg = variant.body.model.model_copy(update={"weights": None, "pretrained": False})
    return build_model(cfg, num_classes)


def plan_variant(
    variant: Variant, spe: int, *, num_classes: int = 10, cuda: bool | None = None
) -> VariantPlan:
    from bench.components.freeze import freeze_stages
    from bench.components.models import model_stages
    from bench.components.optimizers import build_optimizer
    from bench.components.schedulers import SCHEDULERS, SchedulerSpec, build_scheduler
    from bench.engine.swa import SWA

    cfg = variant.body
    train = cfg.train
    epochs = train.epochs
    out = VariantPlan(
        variant.group, epochs, spe, pd.DataFrame(columns=["step", "epoch", "batch", "param_group", "lr"])
    )
    warn = out.warnings.append
    cuda = torch.cuda.is_available() if cuda is None else cuda

    # -- checks that need no model
    if train.precision == "amp_fp16" and not (
        cuda and train.device in ("auto", "cuda") or train.device.startswith("cuda")
    ):
        warn(
            "precision amp_fp16 needs a CUDA device: without one `bench run` records this variant as skipped"
        )
    sched_cfg = train.scheduler
    if sched_cfg.warmup_epochs >= epochs:
        warn(f"warm-up ({sched_cfg.warmup_epochs:g} epochs) is as long as or longer than training ({epochs} epochs): "
             "the main schedule never runs")  # fmt: skip
    spec = SCHEDULERS.get(sched_cfg.name)
    policy = spec.policy if isinstance(spec, SchedulerSpec) else "epoch"
    if train.swa is not None and policy == "plateau":
        warn("SWA with ReduceLROnPlateau: SWALR takes over the LR from swa.start_epoch, the plateau scheduler "
             "is never stepped again")  # fmt: skip

    # -- the real model, frozen as the loop freezes it
    model = _plan_model(variant, num_classes)
    try:
        freeze_stages(model, train.freeze)
    except RecipeError as exc:
        warn(f"train.freeze={train.freeze} is deeper than the model: {exc.detail}; planned without freezing")
    try:
        optimizer = build_optimizer(model, train.optimizer)
        schedule = build_scheduler(optimizer, sched_cfg, epochs=epochs, steps_per_epoch=spe)
        swa = SWA(model, optimizer, train.swa) if train.swa else None
    except (ValueError, TypeError) as exc:
        warn(f"cannot build the optimizer/scheduler: {type(exc).__name__}: {exc}")
        return out
    names = [str(g.get("name", i)) for i, g in enumerate(optimizer.param_groups)]
    start = [float(g["lr"]) for g in optimizer.param_groups]
    top = max(start)
    for name, lr in zip(names, start):
        if lr < RATIO_FLOOR * top:
            warn(f"param group '{name}' starts at LR {lr:.3g}, {lr / top:.1e} of the largest ({top:.3g}): "
                 "per-layer ratios (layer_decay ** depth, head_lr_mult) leave it effectively frozen")  # fmt: skip
    stages = len(model_stages(model)) - 1
    if train.optimizer.layer_decay < 1.0 and train.optimizer.layer_decay**stages < RATIO_FLOOR:
        warn(f"layer_decay {train.optimizer.layer_decay:g} over {stages} stages gives the stem "
             f"{train.optimizer.layer_decay**stages:.1e} of the head's LR")  # fmt: skip

    inner = _schedulers_in(schedule.scheduler)
    onecycles = [s for s in inner if isinstance(s, lrs.OneCycleLR)]
    if onecycles and policy == "epoch":
        warn(f"OneCycleLR is stepped once per epoch here (scheduler '{sched_cfg.name}' is stepped per epoch): "
             f"its cycle of total_steps={onecycles[0].total_steps} steps is meant per batch; use scheduler 'onecycle'")  # fmt: skip

    # -- step exactly as bench/engine/loop.py does
    rows = []
    step = 0
    error = None
    with pywarnings.catch_warnings():
        pywarnings.simplefilter("ignore")
        try:
            for epoch in range(epochs):
                swa_active = swa is not None and swa.active(epoch)
                for i in range(spe):
                    rows += [
                        (step, epoch, i, n, float(g["lr"])) for n, g in zip(names, optimizer.param_groups)
                    ]
                    optimizer.step()  # no gradients: parameters stay; the scheduler sees a real step
                    if not swa_active:
                        schedule.after_batch(epoch, i)
                    step += 1
                if swa_active:
                    swa.update(model)
                else:
                    schedule.after_epoch(PLATEAU_METRIC)
        except (ValueError, ZeroDivisionError) as exc:
            error = exc
    if error is not None:
        warn(f"the schedule fails at step {step} of {epochs * spe} (epoch {step // max(spe, 1)}): {error}")
    for oc in onecycles:
        if error is None and oc.last_epoch < 0.95 * oc.total_steps:
            warn(f"OneCycleLR covers total_steps={oc.total_steps} but is stepped only {oc.last_epoch} times: "
                 f"the cycle is cut off at {oc.last_epoch / oc.total_steps:.0%} and never anneals")  # fmt: skip
    lrs_frame = pd.DataFrame(rows, columns=["step", "epoch", "batch", "param_group", "lr"])
    for name, lr0 in zip(names, start):
        series = lrs_frame.loc[lrs_frame["param_group"] == name, "lr"]
        if len(series) and lr0 > 0 and (series < COLLAPSE * lr0).mean() > 0.5:
            warn(f"param group '{name}': the LR stays below {COLLAPSE:g}× its start for "
                 f"{(series < COLLAPSE * lr0).mean():.0%} of the steps (schedule collapses to ~0)")  # fmt: skip
    out.lrs = lrs_frame
    return out


def num_classes_of(data_cfg, model_cfg) -> int:
    if model_cfg.num_classes:
        return int(model_cfg.num_classes)
    if data_cfg.classes:
        return len(data_cfg.classes)
    return 10  # the head's size does not change the param groups


def plan_recipe(
    loaded: LoadedRecipe, *, override_steps: int | None = None, cuda: bool | None = None
) -> list[VariantPlan]:
    plans = []
    firsts = list({v.group: v for v in reversed(loaded.variants)}.values())[::-1]
    for variant in firsts:
        spe = steps_per_epoch(variant.body.data, override_steps)
        plans.append(
            plan_variant(
                variant, spe, num_classes=num_classes_of(variant.body.data, variant.body.model), cuda=cuda
            )
        )
    return plans


def write_plan(plans: list[VariantPlan], out_dir: Path) -> tuple[Path, Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    frames = [p.lrs.assign(variant=p.group) for p in plans if len(p.lrs)]
    table = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["variant", "step", "epoch", "batch", "param_group", "lr"])
    )
    table = table[["variant", "step", "epoch", "batch", "param_group", "lr"]]
    csv = out_dir / "plan.csv"
    table.to_csv(csv, index=False)
    warn_csv = out_dir / "plan_warnings.csv"
    pd.DataFrame([(p.group, w) for p in plans for w in p.warnings], columns=["variant", "warning"]).to_csv(
        warn_csv, index=False
    )
    png = out_dir / "plan.png"
    plot_plan(plans, png)
    return csv, png, warn_csv


def plot_plan(plans: list[VariantPlan], path: Path) -> None:
    from bench.report.plots import panel_grid, save_grid, style_lr_panel

    if not plans:
        raise BenchError("the recipe has no variants to plan")
    fig, axes = panel_grid(len(plans), width=5.2, height=3.4)
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab20")
    for ax, plan in zip(axes.flat, plans):
        for k, name in enumerate(dict.fromkeys(plan.lrs["param_group"])):
            c = plan.lrs[plan.lrs["param_group"] == name]
            ax.plot(c["step"], c["lr"], lw=1.4, color=cmap(k % 20), linestyle=("-", "--")[k % 2], label=name)
        positive = plan.lrs["lr"][plan.lrs["lr"] > 0]
        if len(positive) and positive.max() / positive.min() > 20:
            ax.set_yscale("log")  # per-layer ratios and long decays read better on a log axis
        if plan.epochs <= 60:
            for e in range(1, plan.epochs):
                ax.axvline(e * plan.steps_per_epoch, color="0.85", lw=0.6, zorder=0)
        title = plan.group if len(plan.group) <= 50 else plan.group[:49] + "…"
        if plan.warnings:
            title += f"\n⚠ {len(plan.warnings)} warning(s): {plan.warnings[0][:60]}…"
        style_lr_panel(
            ax, title, f"optimizer step ({plan.steps_per_epoch}/epoch, grey: epoch boundaries)",
            title_color="tab:red" if plan.warnings else "black", legend=bool(len(plan.lrs)),
        )  # fmt: skip
    save_grid(fig, axes, len(plans), "Planned LR per param group and step (no training)", path)
