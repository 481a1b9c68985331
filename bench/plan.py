"""``bench plan``: every variant's LR and momentum per param group and optimizer step, without
training, and warnings for combinations known to be wrong.

For each variant (one per group: the seed does not change the schedule) the engine's own
builders make the model (no weights: the param-group structure is what matters), its tricks,
optimizer and schedule (``bench/engine/state.py``); then the optimizer is stepped with no
gradients (parameters do not move) through the engine's own stepping rule
(``bench/engine/stepping.py``), warm-up, SWA and all. The LR and momentum each step uses are
recorded. ReduceLROnPlateau is fed a flat metric: the worst case, every reduction fires.
"""

from __future__ import annotations

import math
import warnings as pywarnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from bench import plan_checks
from bench.errors import BenchError, RecipeError
from bench.recipe.load import LoadedRecipe, Variant

PLATEAU_METRIC = 0.0
COLUMNS = ["step", "epoch", "batch", "param_group", "lr", "momentum"]


@dataclass
class VariantPlan:
    group: str
    epochs: int
    steps_per_epoch: int
    lrs: pd.DataFrame  # step, epoch, batch, param_group, lr, momentum
    warnings: list[str] = field(default_factory=list)


def train_size(data_cfg) -> int:
    """Training images the loop will see: ``data.subset``, else the data set's own split."""
    if data_cfg.subset:
        return int(data_cfg.subset)
    from bench.data.cache import cached_splits

    return len(cached_splits(data_cfg).train)


def steps_per_epoch(data_cfg, override: int | None = None) -> int:
    """As the loop: drop the last partial batch unless the data is a single batch."""
    if override:
        return int(override)
    n = train_size(data_cfg)
    bs = data_cfg.batch_size
    return n // bs if n > bs else max(1, math.ceil(n / bs))


def plan_variant(
    variant: Variant, spe: int, *, num_classes: int = 10, cuda: bool | None = None
) -> VariantPlan:
    from bench.components.models import model_stages
    from bench.engine.state import build_training, group_momentum, setup_training
    from bench.engine.stepping import after_optimizer_step, end_of_epoch

    train = variant.body.train
    cuda = torch.cuda.is_available() if cuda is None else cuda
    out = VariantPlan(variant.group, train.epochs, spe, pd.DataFrame(columns=COLUMNS))
    out.warnings += plan_checks.before(train, cuda)
    cpu = torch.device("cpu")
    try:
        state = build_training(variant, cpu, num_classes, spe, with_weights=False)
    except RecipeError as exc:
        out.warnings.append(f"train.freeze={train.freeze} is deeper than the model: {exc.detail}; planned without "
                            "freezing")  # fmt: skip
        state = build_training(variant.with_train(freeze=0), cpu, num_classes, spe, with_weights=False)
    try:
        setup_training(state, spe)
    except (ValueError, TypeError) as exc:
        out.warnings.append(f"cannot build the optimizer/scheduler: {type(exc).__name__}: {exc}")
        return out
    groups = state.optimizer.param_groups
    names = [str(g.get("name", i)) for i, g in enumerate(groups)]
    start = {n: float(g["lr"]) for n, g in zip(names, groups)}
    stages = len(model_stages(state.model)) - 1
    out.warnings += plan_checks.groups(names, list(start.values()), train.optimizer.layer_decay, stages)
    rows, error = [], None
    with pywarnings.catch_warnings():
        pywarnings.simplefilter("ignore")
        try:
            for epoch in range(train.epochs):
                state.epoch = epoch
                for i in range(spe):
                    state.schedule.begin_step()
                    rows += [
                        (state.step, epoch, i, n, float(g["lr"]), group_momentum(g))
                        for n, g in zip(names, groups)
                    ]
                    state.optimizer.step()  # no gradients: parameters stay; the scheduler sees a real step
                    after_optimizer_step(state, True, i)
                end_of_epoch(state, {"val/acc": PLATEAU_METRIC})
        except (ValueError, ZeroDivisionError) as exc:
            error = exc
    out.lrs = pd.DataFrame(rows, columns=COLUMNS)
    out.warnings += plan_checks.after(
        state.schedule, out.lrs, start, error, state.step, train.epochs * spe, spe
    )
    scales = {n: float(g.get("lr_scale", 1.0)) for n, g in zip(names, groups)}
    out.warnings += plan_checks.swa_above_peak(train, out.lrs, scales)
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
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["variant", *COLUMNS])
    table = table[["variant", *COLUMNS]]
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
