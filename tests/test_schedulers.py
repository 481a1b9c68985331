"""Every torch LR scheduler kind, stepped the way each needs, after the optimizer step."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.optim import lr_scheduler as lrs

from bench.components.schedulers import SCHEDULERS, build_scheduler, check_scheduler
from bench.engine.precision import Precision
from bench.recipe.schema import SchedulerConfig

EPOCHS, STEPS = 6, 4
KINDS = ["lambda", "multiplicative", "step", "multistep", "exponential", "cosine", "plateau", "cyclic", "onecycle",
         "cosine_warm_restarts", "linear", "polynomial", "constant_lr"]  # fmt: skip


def two_group_optimizer(lr: float = 0.1) -> torch.optim.Optimizer:
    params = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))]
    groups = [
        {"params": [params[0]], "lr": lr, "lr_scale": 1.0},
        {"params": [params[1]], "lr": lr * 10, "lr_scale": 10.0},
    ]
    return torch.optim.SGD(groups, lr=lr, momentum=0.9)


def run_bench(kind: str, epochs: int = EPOCHS, **kwargs) -> list[list[float]]:
    opt = two_group_optimizer()
    sched = build_scheduler(opt, SchedulerConfig(name=kind, **kwargs), epochs=epochs, steps_per_epoch=STEPS)
    seen = []
    for epoch in range(epochs):
        for i in range(STEPS):
            sched.begin_step()
            seen.append([g["lr"] for g in opt.param_groups])
            opt.step()
            sched.end_step(True, epoch, i, hold=False)
        sched.after_epoch(0.5)
    return seen


def run_torch(kind: str) -> list[list[float]]:
    """The reference: torch classes stepped by hand, as their documentation prescribes."""
    opt = two_group_optimizer()
    total = EPOCHS * STEPS
    make = {
        "lambda": lambda: lrs.LambdaLR(opt, lambda e: 1 - e / EPOCHS),
        "multiplicative": lambda: lrs.MultiplicativeLR(opt, lambda e: 0.95),
        "step": lambda: lrs.StepLR(opt, step_size=2),
        "multistep": lambda: lrs.MultiStepLR(opt, milestones=[3, 4]),
        "exponential": lambda: lrs.ExponentialLR(opt, gamma=0.9),
        "cosine": lambda: lrs.CosineAnnealingLR(opt, T_max=EPOCHS),
        "plateau": lambda: lrs.ReduceLROnPlateau(opt, mode="max", patience=2),
        "cyclic": lambda: lrs.CyclicLR(opt, base_lr=[0.01, 0.1], max_lr=[0.1, 1.0], step_size_up=total // 4),
        "onecycle": lambda: lrs.OneCycleLR(opt, max_lr=[0.1, 1.0], total_steps=total),
        "cosine_warm_restarts": lambda: lrs.CosineAnnealingWarmRestarts(opt, T_0=2),
        "linear": lambda: lrs.LinearLR(opt, total_iters=EPOCHS),
        "polynomial": lambda: lrs.PolynomialLR(opt, total_iters=EPOCHS),
        "constant_lr": lambda: lrs.ConstantLR(opt),
    }
    sched = make[kind]()
    seen = []
    for epoch in range(EPOCHS):
        for i in range(STEPS):
            seen.append([g["lr"] for g in opt.param_groups])
            opt.step()
            if kind in ("cyclic", "onecycle"):
                sched.step()
            elif kind == "cosine_warm_restarts":
                sched.step(epoch + (i + 1) / STEPS)
        if kind == "plateau":
            sched.step(0.5)
        elif kind not in ("cyclic", "onecycle", "cosine_warm_restarts"):
            sched.step()
    return seen


def test_every_torch_scheduler_kind_has_a_name():
    """The mission: every torch.optim.lr_scheduler kind, by name (SequentialLR and ChainedScheduler
    take their schedulers as a list); LinearLR, PolynomialLR, ConstantLR and the two composites
    were missing, and SequentialLR by import path failed inside every run."""
    import inspect

    kinds = {
        cls for cls in vars(lrs).values()
        if inspect.isclass(cls) and cls.__module__ == lrs.__name__ and not cls.__name__.startswith("_")
        and cls is not lrs.LRScheduler and (issubclass(cls, lrs.LRScheduler) or cls is lrs.ReduceLROnPlateau)
    }  # fmt: skip
    named = {cls for spec in map(SCHEDULERS.get, SCHEDULERS.names()) for cls in inspect.getmro(spec.cls)}
    assert len(kinds) >= 15 and kinds <= named, sorted(c.__name__ for c in kinds - named)


@pytest.mark.parametrize("kind", KINDS)
def test_lr_matches_torch_stepped_by_hand_and_keeps_per_group_ratios(kind):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # e.g. "lr_scheduler.step() before optimizer.step()"
        ours = run_bench(kind)
    flat = lambda rows: [lr for row in rows for lr in row]  # noqa: E731
    assert flat(ours) == pytest.approx(flat(run_torch(kind)), rel=1e-9, abs=1e-12)
    assert all(b == pytest.approx(10 * a) for a, b in ours)  # per-layer ratio kept every step


def test_linear_warmup_ramps_per_step_then_hands_over():
    lrs_seen = [g[0] for g in run_bench("cosine", warmup_epochs=1, warmup_start_factor=0.1)]
    cosine = [g[0] for g in run_bench("cosine")]
    ramp = [0.1 + 0.9 * s / STEPS for s in range(STEPS)]
    assert lrs_seen[:STEPS] == pytest.approx([c * f for c, f in zip(cosine, ramp)])  # a ramp, not a step
    assert lrs_seen[STEPS:] == pytest.approx(cosine[STEPS:])  # the schedule itself is unchanged after it


def test_fractional_warmup_differs_from_a_whole_epoch():
    half = [g[0] for g in run_bench("step", warmup_epochs=0.5)]
    whole = [g[0] for g in run_bench("step", warmup_epochs=1)]
    assert half[STEPS // 2] == pytest.approx(0.1) and whole[STEPS // 2] < 0.1
    assert half != whole


def test_warmup_is_refused_where_the_scheduler_ramps_by_itself():
    with pytest.raises(ValueError, match="ramps up by itself"):
        check_scheduler("onecycle", {}, warmup=True)


def test_scheduler_does_not_step_when_the_grad_scaler_skipped_the_step():
    param = torch.nn.Parameter(torch.ones(1))
    opt = torch.optim.SGD([param], lr=0.1)
    sched = lrs.StepLR(opt, step_size=1, gamma=0.5)
    precision = Precision("fp32", torch.device("cpu"))
    precision.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    precision.backward((param * float("inf")).sum())  # inf gradients: the scaler must skip
    stepped = precision.step(opt)
    if stepped:
        sched.step()
    assert stepped is False and opt.param_groups[0]["lr"] == 0.1 and param.item() == 1.0


def per_layer_adamw() -> torch.optim.Optimizer:
    """The issue's setup: AdamW with head_lr_mult 10 and layer_decay 0.5 (stem at 1/320 of the head)."""
    from bench.components.models import build_model
    from bench.components.optimizers import build_optimizer
    from bench.recipe.schema import ModelConfig, OptimizerConfig

    model = build_model(ModelConfig(name="test_resnet"), num_classes=4)
    return build_optimizer(model, OptimizerConfig(name="adamw", lr=1e-3, head_lr_mult=10.0, layer_decay=0.5))


FLOORS = {
    "cosine": {"eta_min": 1e-4},
    "cosine_warm_restarts": {"eta_min": 1e-4, "T_0": 3},
    "plateau": {"min_lr": 1e-4, "patience": 0},  # a flat metric: every epoch reduces, down to the floor
}


@pytest.mark.parametrize("kind", sorted(FLOORS))
def test_lr_floor_is_per_group_and_keeps_per_layer_ratios(kind):
    """An absolute floor is for the recipe's base LR: each group's floor is scaled by its lr_scale,
    so no group is lifted above its own start and the ratios hold over the whole schedule."""
    opt = per_layer_adamw()
    sched = build_scheduler(
        opt, SchedulerConfig(name=kind, **FLOORS[kind]), epochs=EPOCHS, steps_per_epoch=STEPS
    )
    scales = [g["lr_scale"] for g in opt.param_groups]
    start = [g["lr"] for g in opt.param_groups]
    assert min(scales) < 0.1 and max(scales) == 10.0
    seen = []
    for epoch in range(EPOCHS):
        for i in range(STEPS):
            seen.append([g["lr"] for g in opt.param_groups])
            opt.step()
            sched.end_step(True, epoch, i, hold=False)
        sched.after_epoch(0.5)
    seen.append([g["lr"] for g in opt.param_groups])
    for row in seen:
        base = row[0] / scales[0]
        assert row == pytest.approx([base * s for s in scales], rel=1e-9)
        assert all(lr <= lr0 * (1 + 1e-12) for lr, lr0 in zip(row, start))
        assert all(lr >= 1e-4 * s * (1 - 1e-9) for lr, s in zip(row, scales))  # each group's own floor
    if kind == "plateau":
        assert seen[-1] == pytest.approx([1e-4 * s for s in scales])  # reduced down to the scaled floor


REFERENCES = {  # name -> (the floor's argument, other arguments, the torch class with that floor)
    "cosine": ("eta_min", {}, lambda o, m: lrs.CosineAnnealingLR(o, T_max=EPOCHS, eta_min=m)),
    "cosine_warm_restarts": ("eta_min", {"T_0": 2}, lambda o, m: lrs.CosineAnnealingWarmRestarts(o, T_0=2, eta_min=m)),
    "plateau": ("min_lr", {"patience": 0}, lambda o, m: lrs.ReduceLROnPlateau(o, "max", patience=0, min_lr=m)),
}  # fmt: skip


@pytest.mark.parametrize("floor", [1e-3, 0.0])
@pytest.mark.parametrize("kind", sorted(REFERENCES))
def test_floors_leave_torchs_numbers_where_they_need_no_scaling(kind, floor):
    """Bit-identical to the torch class for the group at the base LR, and for every group when the
    floor is 0."""
    key, other, factory = REFERENCES[kind]
    ours, theirs = two_group_optimizer(), two_group_optimizer()
    cfg = SchedulerConfig(name=kind, **{key: floor, **other})
    sched = build_scheduler(ours, cfg, epochs=EPOCHS, steps_per_epoch=STEPS)
    ref = factory(theirs, floor)
    exact = slice(None) if floor == 0.0 else slice(0, 1)
    for epoch in range(EPOCHS):
        for i in range(STEPS):
            assert [g["lr"] for g in ours.param_groups[exact]] == [
                g["lr"] for g in theirs.param_groups[exact]
            ]
            ours.step(), theirs.step()
            sched.end_step(True, epoch, i, hold=False)
            if kind == "cosine_warm_restarts":
                ref.step(epoch + (i + 1) / STEPS)
        sched.after_epoch(0.5)
        if kind != "cosine_warm_restarts":
            ref.step(*([0.5] if kind == "plateau" else []))


def test_default_restart_period_ends_with_the_run_and_never_restarts_every_epoch():
    """Prime epoch counts have no divisor to cycle by: one cycle of the whole run, not T_0=1."""
    periods = {}
    for epochs in range(1, 41):
        opt = two_group_optimizer()
        sched = build_scheduler(
            opt, SchedulerConfig(name="cosine_warm_restarts"), epochs=epochs, steps_per_epoch=2
        )
        periods[epochs] = sched.scheduler.T_0
    assert all(epochs % t0 == 0 and (t0 >= 2 or epochs == 1) for epochs, t0 in periods.items()), periods
    assert [periods[e] for e in (7, 11, 13, 4, 5, 9, 10, 12, 24)] == [7, 11, 13, 2, 5, 3, 2, 4, 8]
    seven = [g[0] for g in run_bench("cosine_warm_restarts", epochs=7)]
    assert all(b < a for a, b in zip(seven, seven[1:]))  # one cosine over the 7 epochs, no restart


def test_a_per_group_max_lr_list_passes_validation_and_trains(tmp_path, tiny_image_folder):
    """OneCycleLR takes one max_lr per param group. The recipe check built the scheduler over a
    one-group dummy optimizer and refused a valid list with exit 2; the run itself (two groups:
    weights, and norm/bias without weight decay) trains with it."""
    from bench.engine.loop import run_variant
    from bench.validate.recipe import load_validated
    from tests.recipes import tiny_recipe, write_recipe

    recipe = tiny_recipe(tiny_image_folder, **{"train.epochs": 1})
    recipe["train"]["scheduler"] = {"name": "onecycle", "max_lr": [0.1, 0.05]}
    loaded = load_validated(str(write_recipe(tmp_path / "r.yaml", recipe)), [], [], full=True)
    result = run_variant(loaded.variants[0], run_dir=tmp_path / "out")
    assert result.status == "finished", result.reason


WARMUP_THEN_COSINE = {
    "schedulers": [{"name": "linear", "start_factor": 0.1, "total_iters": 2}, {"name": "cosine"}],
    "milestones": [2],
}


def stepped(opt: torch.optim.Optimizer, step_batch, step_epoch) -> list[list[float]]:
    seen = []
    for epoch in range(EPOCHS):
        for i in range(STEPS):
            seen.append([g["lr"] for g in opt.param_groups])
            opt.step()
            step_batch(epoch, i)
        step_epoch()
    return seen


def test_sequential_warmup_then_cosine_matches_torch_and_the_cosine_spans_the_epochs_left():
    ours = run_bench("sequential", **WARMUP_THEN_COSINE)
    opt = two_group_optimizer()
    ref = lrs.SequentialLR(
        opt,
        [lrs.LinearLR(opt, start_factor=0.1, total_iters=2), lrs.CosineAnnealingLR(opt, T_max=EPOCHS - 2)],
        [2],
    )
    theirs = stepped(opt, lambda e, i: None, ref.step)
    assert [lr for row in ours for lr in row] == pytest.approx([lr for row in theirs for lr in row], rel=1e-9)
    assert ours[0][0] == pytest.approx(0.01) and ours[2 * STEPS][0] == pytest.approx(0.1)  # ramp, then peak
    assert all(b == pytest.approx(10 * a) for a, b in ours)


def test_sequential_per_step_interval_converts_its_milestones_and_its_schedulers():
    ours = run_bench("sequential", interval="step", **WARMUP_THEN_COSINE)
    opt = two_group_optimizer()
    ref = lrs.SequentialLR(
        opt,
        [lrs.LinearLR(opt, start_factor=0.1, total_iters=2 * STEPS), lrs.CosineAnnealingLR(opt, T_max=(EPOCHS - 2) * STEPS)],
        [2 * STEPS],
    )  # fmt: skip
    theirs = stepped(opt, lambda e, i: ref.step(), lambda: None)
    assert [lr for row in ours for lr in row] == pytest.approx([lr for row in theirs for lr in row], rel=1e-9)
    assert len({row[0] for row in ours[: 2 * STEPS]}) == 2 * STEPS  # a smooth ramp, one LR per step


def test_chained_multiplies_its_schedulers_like_torch():
    kwargs = {
        "schedulers": [{"name": "exponential", "gamma": 0.9}, {"name": "step", "step_size": 2, "gamma": 0.5}]
    }
    ours = run_bench("chained", **kwargs)
    opt = two_group_optimizer()
    ref = lrs.ChainedScheduler(
        [lrs.ExponentialLR(opt, gamma=0.9), lrs.StepLR(opt, step_size=2, gamma=0.5)], opt
    )
    theirs = stepped(opt, lambda e, i: None, ref.step)
    assert [lr for row in ours for lr in row] == pytest.approx([lr for row in theirs for lr in row], rel=1e-9)


def test_a_sequential_schedule_resumes_where_it_stopped():
    """The loop checkpoints ``LRSchedule.state_dict()``: a run resumed after 3 epochs must see the
    same LRs as one that never stopped (the composite's schedulers' states travel inside it)."""
    straight = run_bench("sequential", **WARMUP_THEN_COSINE)
    cfg = SchedulerConfig(name="sequential", **WARMUP_THEN_COSINE)

    def epochs(opt, sched, first: int, last: int) -> list[float]:
        seen = []
        for _epoch in range(first, last):
            seen.extend(lr for _ in range(STEPS) for lr in [g["lr"] for g in opt.param_groups])
            opt.step()
            sched.after_epoch(None)
        return seen

    opt = two_group_optimizer()
    sched = build_scheduler(opt, cfg, epochs=EPOCHS, steps_per_epoch=STEPS)
    epochs(opt, sched, 0, 3)
    opt2 = two_group_optimizer()
    resumed = build_scheduler(opt2, cfg, epochs=EPOCHS, steps_per_epoch=STEPS)
    opt2.load_state_dict(opt.state_dict())
    resumed.load_state_dict(sched.state_dict())
    assert epochs(opt2, resumed, 3, EPOCHS) == pytest.approx(
        [lr for row in straight[3 * STEPS :] for lr in row]
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"schedulers": [{"name": "onecycle"}, {"name": "cosine"}], "milestones": [2]}, "all step per epoch or all per batch"),
        ({"schedulers": [{"name": "linear"}, {"name": "cosine"}]}, "needs milestones: 1 increasing"),
        ({"schedulers": [{"name": "linear"}, {"name": "cosine"}], "milestones": [3, 2]}, "needs milestones"),
        ({"schedulers": [{"name": "cosine", "warmup_epochs": 1}], "milestones": []}, "on the scheduler itself"),
        ({"schedulers": [{"name": "chained", "schedulers": []}], "milestones": []}, "do not nest"),
        ({"schedulers": [{"name": "cosine", "T_maxx": 3}], "milestones": []}, r"schedulers\[0\].*T_maxx"),
        ({"schedulers": "cosine", "milestones": []}, "a list of"),
    ],
)  # fmt: skip
def test_a_malformed_sequential_is_refused_naming_what_is_wrong(kwargs, match):
    with pytest.raises(ValueError, match=match):
        check_scheduler("sequential", kwargs, warmup=False)


def test_a_sequential_whose_last_stretch_starts_after_the_run_is_refused():
    from bench.components.schedulers import try_scheduler
    from bench.recipe.schema import OptimizerConfig

    cfg = SchedulerConfig(name="sequential", **WARMUP_THEN_COSINE)
    try_scheduler(OptimizerConfig(name="sgd", lr=0.1), cfg, epochs=3)
    with pytest.raises(
        ValueError, match=r"milestone 2 is not inside the run's 2 epoch\(s\), so schedulers\[1\]"
    ):
        try_scheduler(OptimizerConfig(name="sgd", lr=0.1), cfg, epochs=2)


def test_sequentiallr_by_import_path_is_pointed_to_its_name():
    with pytest.raises(ValueError, match="name it 'sequential'"):
        check_scheduler("torch.optim.lr_scheduler:SequentialLR", {"milestones": [2]}, warmup=False)


def test_a_recipe_with_warmup_then_cosine_as_sequential_validates_and_trains(tmp_path, tiny_image_folder):
    """By import path (torch.optim.lr_scheduler.SequentialLR) the dry run passed and every run then
    failed: its schedulers must be built on the run's optimizer. By name it trains."""
    from bench.engine.loop import run_variant
    from bench.validate.recipe import load_validated
    from tests.recipes import tiny_recipe, write_recipe

    recipe = tiny_recipe(tiny_image_folder, **{"train.epochs": 2})
    recipe["train"]["scheduler"] = {
        "name": "sequential", "milestones": [1],
        "schedulers": [{"name": "constant_lr", "factor": 0.5, "total_iters": 1}, {"name": "polynomial"}],
    }  # fmt: skip
    loaded = load_validated(str(write_recipe(tmp_path / "r.yaml", recipe)), [], [], full=True)
    result = run_variant(loaded.variants[0], run_dir=tmp_path / "out")
    assert result.status == "finished", result.reason
