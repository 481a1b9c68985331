"""What one variant's training is made of, and the order it is built in:

    tricks -> seed -> data -> model -> tricks.on_model -> normalisation + loaders
           -> optimizer (param groups) -> schedule -> loss -> tricks.on_setup

Two random streams: ``variant.init_stream`` seeds the global RNGs right before the model is built
(initialisation, dropout); ``variant.data_stream`` seeds the loaders (order, augmentation). Both
are the variant's ``seed`` unless the recipe splits them (``init_seeds`` / ``data_seeds``).

``build_training`` is the part without data: ``bench plan`` uses it to step the real schedule.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.components.losses import build_loss
from bench.components.lr_schedule import LRSchedule
from bench.components.models import build_model
from bench.components.optimizers import build_optimizer
from bench.components.schedulers import build_scheduler
from bench.engine.errors import VariantSkipped
from bench.engine.evaluation import evaluate
from bench.engine.measure import synchronize
from bench.engine.precision import Precision, unavailable_reason
from bench.recipe.load import Variant
from bench.tricks import active_tricks


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class RunState:
    """Everything the loop and its tricks and hooks share."""

    variant: Variant
    device: torch.device
    model: nn.Module
    tricks: list
    precision: Precision
    optimizer: torch.optim.Optimizer | None = None
    schedule: LRSchedule | None = None
    criterion: nn.Module | None = None
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None  # the model, or its compiled form
    data: Any = None
    train_loader: Any = None
    eval_loaders: dict[str, Any] = field(default_factory=dict)
    normalize: str = "train"  # which statistics normalise the inputs (recorded)
    input_stats: tuple = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # (mean, std) the loaders apply
    export_model: nn.Module | None = None  # what the variant exports (SWA: the averaged model)
    run_dir: Path | None = None
    epoch: int = 0  # next epoch to train
    step: int = 0  # batches trained (optimizer steps attempted)
    history: list[dict[str, float]] = field(default_factory=list)
    best_val: float = float("-inf")  # best validation accuracy so far (best.ckpt)
    wall_before: float = 0.0  # seconds spent on this variant by earlier (killed) processes
    peak_mb_before: float = 0.0  # peak memory of earlier processes of this variant
    meter: Any = None  # train throughput, carried across a resume
    eval_rates: dict[str, list[float]] = field(default_factory=dict)
    resumed_from_epoch: int | None = None

    @property
    def cfg(self):
        return self.variant.body

    # The engine's services for tricks, which get them through the state: a trick may not import
    # the engine (the engine imports the tricks).
    def evaluate(self, model: nn.Module, loader: Any) -> tuple[float, float]:
        """(accuracy, warm images/s) of ``model`` (e.g. averaged weights) under the run's precision and TTA."""
        return evaluate(model, loader, self.precision, tta=self.cfg.train.tta)

    def synchronize(self) -> None:
        """Wait for the device's queued work (timing)."""
        synchronize(self.device)

    def loaders(self) -> list[Any]:
        return [x for x in (self.train_loader, *self.eval_loaders.values()) if x is not None]

    def lrs(self) -> dict[str, float]:
        """LR and momentum of every param group as the next step uses them, plus ``train/lr``
        (the recipe's LR under the schedule) and ``train/momentum`` (the first group's)."""
        factor = self.schedule.warm_factor() if self.schedule is not None else 1.0
        groups = self.optimizer.param_groups
        out = {}
        for i, g in enumerate(groups):
            name = g.get("name", i)
            out[f"train/lr/{name}"] = float(g["lr"]) * factor
            momentum = group_momentum(g)
            if momentum is not None:
                out[f"train/momentum/{name}"] = momentum
        first = groups[0]
        out["train/lr"] = float(first["lr"] / first.get("lr_scale", 1.0)) * factor
        if group_momentum(first) is not None:
            out["train/momentum"] = group_momentum(first)
        return out


def group_momentum(group: dict[str, Any]) -> float | None:
    """SGD/RMSprop ``momentum``, or Adam-family β1; None for optimizers without one (Adagrad)."""
    if "betas" in group:
        return float(group["betas"][0])
    if "momentum" in group:
        return float(group["momentum"])
    return None


def build_training(
    variant: Variant,
    device: torch.device,
    num_classes: int,
    *,
    with_weights: bool = True,
) -> RunState:
    """Model, tricks, optimizer, schedule and loss, without data (``bench plan`` stops here)."""
    cfg = variant.body
    # precision first: it sets the backend flags (TF32, cuDNN) before anything runs
    precision = Precision(cfg.train.precision, device, cfg.train.cudnn_benchmark)
    tricks = active_tricks(cfg.train)
    model_cfg = (
        cfg.model if with_weights else cfg.model.model_copy(update={"weights": None, "pretrained": False})
    )
    model = build_model(model_cfg, num_classes).to(device)
    state = RunState(variant=variant, device=device, model=model, tricks=tricks, precision=precision)
    state.forward = model
    for trick in tricks:
        trick.on_model(state)
    return state


def setup_training(state: RunState, steps_per_epoch: int) -> None:
    """Optimizer, schedule and loss for a built model, then the tricks that need them."""
    train = state.cfg.train
    state.optimizer = build_optimizer(state.model, train.optimizer)
    state.schedule = build_scheduler(
        state.optimizer, train.scheduler, epochs=train.epochs, steps_per_epoch=steps_per_epoch
    )
    state.criterion = build_loss(train.loss, train.label_smoothing)
    state.precision.attach(state.optimizer)
    for trick in state.tricks:
        trick.on_setup(state)


def build_state(
    variant: Variant, run_dir: Path | None = None, device: torch.device | None = None
) -> RunState:
    """The whole training setup of one variant, data included."""
    from bench.data.cache import cached_splits
    from bench.data.loader import DeviceLoader
    from bench.data.normalize import resolve

    cfg = variant.body
    device = device or resolve_device(cfg.train.device)
    if device.type == "cuda" and not torch.cuda.is_available():  # recorded as skipped, not a crash
        raise VariantSkipped(f"train.device: {cfg.train.device} needs a CUDA GPU; this machine has none")
    reason = unavailable_reason(cfg.train.precision, device)
    if reason:
        raise VariantSkipped(reason)
    seed_everything(variant.init_stream)  # initialisation and the global RNGs (dropout)
    data = cached_splits(cfg.data)
    train = data.train
    batch = cfg.data.batch_size
    state = build_training(variant, device, data.num_classes)
    state.input_stats, state.normalize = resolve(cfg.data, cfg.model, state.model, (data.mean, data.std))
    mean, std = state.input_stats
    common = dict(device=device, mean=mean, std=std, image_size=cfg.data.image_size, seed=variant.data_stream)
    state.train_loader = DeviceLoader(
        train.images, train.labels, batch_size=batch, shuffle=True, drop_last=len(train) > batch,
        augment=cfg.data.augment, **common,
    )  # fmt: skip
    state.eval_loaders = {
        split: DeviceLoader(
            subset.images,
            subset.labels,
            batch_size=cfg.data.eval_batch_size,
            shuffle=False,
            drop_last=False,
            augment=None,
            **common,
        )  # fmt: skip
        for split, subset in (("val", data.val), ("test", data.test))
        if subset is not None and len(subset)
    }
    state.data, state.run_dir = data, run_dir
    setup_training(state, len(state.train_loader))
    return state
