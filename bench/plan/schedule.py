"""``bench plan``: every variant's LR and momentum per param group and optimizer step, without
training, and warnings for combinations known to be wrong.

For each variant (one per group: the seed does not change the schedule) the engine's own
builders make the model (no weights: the param-group structure is what matters), its tricks,
optimizer and schedule (``bench/engine/state.py``); then the optimizer is stepped with no
gradients (parameters do not move) through the engine's own stepping rule
(``bench/engine/loop.py``), warm-up, SWA and all. The LR and momentum each step uses are
recorded. ReduceLROnPlateau is fed a flat metric: the worst case, every reduction fires.
"""

from __future__ import annotations

import warnings as pywarnings
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pandas as pd
import torch

from bench.components.schedulers import ramp_epochs
from bench.errors import BenchError, RecipeError
from bench.plan import checks as plan_checks
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


def steps_per_epoch(data_cfg, override: int | None = None) -> int:
    """As the loop: drop the last partial batch unless the data is a single batch. The training
    images are ``data.subset``, else the data set's own split."""
    if override:
        return int(override)
    if data_cfg.subset:
        n = int(data_cfg.subset)
    else:
        from bench.data.cache import cached_splits

        n = len(cached_splits(data_cfg).train)
    return n // data_cfg.batch_size if n > data_cfg.batch_size else 1


def plan_variant(
    variant: Variant, spe: int, *, num_classes: int = 10, cuda: bool | None = None
) -> VariantPlan:
    from bench.components.models import model_stages
    from bench.engine.loop import after_optimizer_step, end_of_epoch
    from bench.engine.state import build_training, group_momentum, setup_training

    train = variant.body.train
    cuda = torch.cuda.is_available() if cuda is None else cuda
    out = VariantPlan(variant.group, train.epochs, spe, pd.DataFrame(columns=COLUMNS))
    out.warnings += plan_checks.before(train, cuda)
    cpu = torch.device("cpu")
    try:
        state = build_training(variant, cpu, num_classes, with_weights=False)
    except RecipeError as exc:
        out.warnings.append(f"train.freeze={train.freeze} is deeper than the model: {exc.detail}; planned without "
                            "freezing")  # fmt: skip
        state = build_training(variant.with_train(freeze=0), cpu, num_classes, with_weights=False)
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
    swa_warning = plan_checks.swa_above_peak(train, out.lrs, scales)
    out.warnings += swa_warning
    swa_start = train.swa.start_epoch * spe if train.swa is not None else None
    ramp = train.scheduler.warmup_epochs + ramp_epochs(train.scheduler.name, train.scheduler.kwargs)
    out.warnings += plan_checks.rises_above_peak(
        out.lrs, round(ramp * spe), spe, swa_start,
        until=swa_start if swa_warning else None,  # the SWA warning said it for every group, with the fix
    )  # fmt: skip
    return out


def plan_recipe(
    loaded: LoadedRecipe, *, override_steps: int | None = None, cuda: bool | None = None
) -> list[VariantPlan]:
    plans = []
    for v in list({v.group: v for v in reversed(loaded.variants)}.values())[::-1]:  # each group's first
        data = v.body.data  # the head's size does not change the param groups: 10 when nothing says
        classes = int(v.body.model.num_classes or len(data.classes or ()) or 10)
        plans.append(plan_variant(v, steps_per_epoch(data, override_steps), num_classes=classes, cuda=cuda))
    return plans


def write_plan(plans: list[VariantPlan], out_dir: Path) -> tuple[Path, Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    csv, png, warn_csv = out_dir / "plan.csv", out_dir / "plan.png", out_dir / "plan_warnings.csv"
    frames = [p.lrs.assign(variant=p.group) for p in plans if len(p.lrs)]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["variant", *COLUMNS])
    table[["variant", *COLUMNS]].to_csv(csv, index=False)
    warnings = [(p.group, w) for p in plans for w in p.warnings]
    pd.DataFrame(warnings, columns=["variant", "warning"]).to_csv(warn_csv, index=False)
    plot_plan(plans, png)
    return csv, png, warn_csv


def _title(plans: list[VariantPlan], width: int = 52) -> str:
    """Every variant of the panel named in full, wrapped between ``key=value`` items: the keys all
    share first, then each key that differs with all its values (``precision=fp32 | amp_bf16``)."""
    import textwrap

    wrap = partial(textwrap.wrap, width=width, break_long_words=False, break_on_hyphens=False)
    pairs = [[part.partition("=") for part in p.group.split(",")] for p in plans]
    keys = [k for k, _, _ in pairs[0]]
    if all(all(sep for _, sep, _ in pp) and [k for k, _, _ in pp] == keys for pp in pairs):
        named = [{k: v for k, _, v in pp} for pp in pairs]
        values = {k: list(dict.fromkeys(d[k] for d in named)) for k in keys}
        lines = wrap(", ".join(f"{k}={v[0]}" for k, v in values.items() if len(v) == 1))
        for k, v in values.items():
            lines += wrap(f"same LR for {k}={' | '.join(v)}") if len(v) > 1 else []
    else:  # names not of the ``a=1,b=2`` form
        lines = [line for p in plans for line in textwrap.wrap(p.group, width, break_long_words=False)]
    count = len({w for p in plans for w in p.warnings})
    if count:
        lines.append(f"⚠ {count} warning(s): see the list printed and plan_warnings.csv")
    return "\n".join(lines)


def plan_panels(plans: list[VariantPlan]) -> list[tuple[list[VariantPlan], str]]:
    """(variants, title): one panel per distinct LR schedule (precision, say, does not change it), in
    the order of the first variant that has it: the 36 variants of cifar10_resnet.yaml are 12
    schedules, each readable with a full title."""
    by_schedule: dict[tuple, list[VariantPlan]] = {}
    for plan in plans:
        key = (plan.epochs, plan.steps_per_epoch, plan.lrs.to_csv(index=False))
        by_schedule.setdefault(key, []).append(plan)
    return [(members, _title(members)) for members in by_schedule.values()]


def plot_plan(plans: list[VariantPlan], path: Path) -> list[str]:
    """The plan's PNG: one panel per distinct schedule (``plan_panels``); returns their titles."""
    from bench.report.plots import panel_grid, save_grid, style_lr_panel

    if not plans:
        raise BenchError("the recipe has no variants to plan")
    panels = plan_panels(plans)
    lines = max(title.count("\n") + 1 for _, title in panels)
    height = 3.0 + 0.16 * lines  # room for the full title
    fig, axes = panel_grid(len(panels), width=5.6, height=height)  # the Agg backend: no display needed
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab20")
    for ax, (members, title) in zip(axes.flat, panels):
        plan = members[0]
        for k, (name, c) in enumerate(plan.lrs.groupby("param_group", sort=False)):
            ax.plot(c["step"], c["lr"], lw=1.4, color=cmap(k % 20), linestyle=("-", "--")[k % 2], label=name)
        positive = plan.lrs["lr"][plan.lrs["lr"] > 0]
        if len(positive) and positive.max() / positive.min() > 20:
            ax.set_yscale("log")  # per-layer ratios and long decays read better on a log axis
        if plan.epochs <= 60:
            for e in range(1, plan.epochs):
                ax.axvline(e * plan.steps_per_epoch, color="0.85", lw=0.6, zorder=0)
        style_lr_panel(
            ax, title, f"optimizer step ({plan.steps_per_epoch}/epoch, grey: epoch boundaries)",
            title_color="tab:red" if any(p.warnings for p in members) else "black", legend=bool(len(plan.lrs)),
        )  # fmt: skip
    title = (f"Planned LR per param group and step (no training): {len(plans)} variant(s), "
             f"{len(panels)} distinct schedule(s)")  # fmt: skip
    save_grid(fig, axes, len(panels), title, path, top=1 - 0.4 / (height * axes.shape[0]))
    return [title for _, title in panels]
