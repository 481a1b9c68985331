"""The one training loop. ``run_variant`` is the single entry for running one variant: the
runner, the tuner and the resume check all call it.

    build     seed -> data -> model (freeze) -> optimizer (param groups) -> scheduler -> SWA
    resume    load the last checkpoint of this run directory, if any
    per epoch train (autocast, backward, clip, optimizer step, per-batch scheduler step)
              evaluate (no_grad, eval mode) -> per-epoch scheduler / SWA step -> hooks -> checkpoint
    finish    SWA BatchNorm update and evaluation -> save weights -> final metrics
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.components.freeze import freeze_stages, set_train_mode
from bench.components.losses import build_loss
from bench.components.models import build_model, count_parameters
from bench.components.optimizers import build_optimizer
from bench.components.schedulers import LRSchedule, build_scheduler
from bench.data.loader import DeviceLoader
from bench.data.splits import DataSplits, load_splits
from bench.engine import checkpoint as ckpt
from bench.engine.errors import Diverged, VariantSkipped
from bench.engine.hooks import Hook, VariantResult
from bench.engine.measure import PeakMemory, Throughput, synchronize
from bench.engine.precision import Precision, unavailable_reason
from bench.engine.swa import SWA
from bench.errors import CheckpointError
from bench.recipe.load import Variant


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
    """Everything the loop and its hooks share."""

    variant: Variant
    device: torch.device
    data: DataSplits
    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    precision: Precision
    swa: SWA | None
    frozen_norms: list[nn.Module]
    train_loader: DeviceLoader
    eval_loaders: dict[str, DeviceLoader]
    run_dir: Path | None
    epoch: int = 0  # next epoch to train
    step: int = 0  # optimizer steps taken
    best_acc: float = float("-inf")
    history: list[dict[str, float]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def cfg(self):
        return self.variant.body

    def lrs(self) -> dict[str, float]:
        """LR of every param group, plus ``train/lr``: the recipe's LR times the schedule factor."""
        groups = self.optimizer.param_groups
        out = {f"train/lr/{g.get('name', i)}": float(g["lr"]) for i, g in enumerate(groups)}
        first = groups[0]
        out["train/lr"] = float(first["lr"] / first.get("lr_scale", 1.0))
        return out


_DATA_CACHE: dict[str, DataSplits] = {}


def cached_splits(data_cfg) -> DataSplits:
    """Variants of one recipe usually share their data: decode and split it once per process."""
    key = data_cfg.model_dump_json()
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()
        _DATA_CACHE[key] = load_splits(data_cfg)
    return _DATA_CACHE[key]


def build_state(
    variant: Variant, run_dir: Path | None = None, device: torch.device | None = None
) -> RunState:
    cfg = variant.body
    device = device or resolve_device(cfg.train.device)
    reason = unavailable_reason(cfg.train.precision, device)
    if reason:
        raise VariantSkipped(reason)
    seed_everything(variant.seed)
    data = cached_splits(cfg.data)
    model = build_model(cfg.model, data.num_classes)
    frozen_norms = freeze_stages(model, cfg.train.freeze)
    memory_format = torch.channels_last if cfg.train.channels_last else torch.preserve_format
    model = model.to(device, memory_format=memory_format)
    optimizer = build_optimizer(model, cfg.train.optimizer)
    loader_args = dict(device=device, mean=data.mean, std=data.std, image_size=cfg.data.image_size)
    train_loader = DeviceLoader(
        data.train.images, data.train.labels, batch_size=cfg.data.batch_size, shuffle=True,
        drop_last=len(data.train) > cfg.data.batch_size, augment=cfg.data.augment, seed=variant.seed, **loader_args,
    )  # fmt: skip
    eval_loaders = {
        split: DeviceLoader(
            subset.images,
            subset.labels,
            batch_size=cfg.data.eval_batch_size,
            shuffle=False,
            drop_last=False,
            augment=None,
            seed=variant.seed,
            **loader_args,
        )  # fmt: skip
        for split, subset in (("val", data.val), ("test", data.test))
        if subset is not None and len(subset)
    }
    schedule = build_scheduler(
        optimizer, cfg.train.scheduler, epochs=cfg.train.epochs, steps_per_epoch=len(train_loader)
    )
    swa = SWA(model, optimizer, cfg.train.swa) if cfg.train.swa else None
    return RunState(
        variant=variant, device=device, data=data, model=model, optimizer=optimizer, schedule=schedule,
        precision=Precision(cfg.train.precision, device), swa=swa, frozen_norms=frozen_norms,
        train_loader=train_loader, eval_loaders=eval_loaders, run_dir=run_dir,
    )  # fmt: skip


@torch.no_grad()
def evaluate(model: nn.Module, loader: DeviceLoader, precision: Precision) -> tuple[float, float, float]:
    """(top-1 accuracy, images/s, seconds) over the whole loader, in eval mode."""
    was_training = model.training
    model.eval()
    synchronize(loader.device)
    start = time.perf_counter()
    correct = torch.zeros((), dtype=torch.int64, device=loader.device)
    for x, y in loader:
        with precision.autocast():
            logits = model(x)
        correct += (logits.argmax(1) == y).sum()
    accuracy = correct.item() / max(loader.num_images, 1)  # .item() synchronises
    seconds = time.perf_counter() - start
    model.train(was_training)
    return accuracy, loader.num_images / seconds if seconds > 0 else float("nan"), seconds


def train_one_epoch(state: RunState, criterion: nn.Module, meter: Throughput, progress: Any = None) -> float:
    """One pass over the training data; returns the mean training loss."""
    model, optimizer, precision, loader = state.model, state.optimizer, state.precision, state.train_loader
    clip = state.cfg.train.grad_clip
    swa_active = state.swa is not None and state.swa.active(state.epoch)
    set_train_mode(model, state.frozen_norms)
    loader.set_epoch(state.epoch)
    loss_sum = torch.zeros((), device=state.device)  # summed on the device: no sync per step
    seen = 0
    meter.start()
    for i, (x, y) in enumerate(loader):
        with precision.autocast():
            loss = criterion(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        precision.backward(loss)
        if clip is not None:
            precision.unscale(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        stepped = precision.step(optimizer)
        if stepped and not swa_active:
            state.schedule.after_batch(state.epoch, i)  # scheduler steps follow optimizer steps
        state.step += 1
        loss_sum += loss.detach() * y.shape[0]
        seen += y.shape[0]
        meter.step(y.shape[0])
        if progress is not None:
            progress.batch(i, len(loader), loss_sum, seen)
    meter.stop()
    return (loss_sum / max(seen, 1)).item()


def save_checkpoint(state: RunState, name: str = ckpt.LAST) -> None:
    """Write everything needed to continue this variant exactly: weights, optimizer, scheduler,
    scaler, SWA, counters, best metric, history and every RNG state (atomic write)."""
    if state.run_dir is None:
        return
    extra = {k: v for k, v in state.extra.items() if not k.startswith("_")}
    if "_wall_start" in state.extra:  # wall time spent on this variant so far, across resumes
        extra["wall_before_resume"] = state.extra.get("wall_before_resume", 0.0) + (
            time.perf_counter() - state.extra["_wall_start"]
        )
    payload = {
        "format": ckpt.FORMAT,
        "run_key": state.variant.run_key,
        "epoch": state.epoch,
        "step": state.step,
        "best_acc": state.best_acc,
        "history": state.history,
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.schedule.state_dict(),
        "scaler": state.precision.state_dict(),
        "swa": state.swa.state_dict() if state.swa else {},
        "extra": extra,
        "rng": ckpt.rng_state(),
    }
    ckpt.atomic_save(payload, state.run_dir / name)


def try_resume(state: RunState) -> bool:
    """Restore the last checkpoint of this run directory; False when there is none.

    A truncated, corrupt, code-carrying or foreign checkpoint raises ``CheckpointError``: it is
    never loaded, and never silently replaced by a fresh start.
    """
    if state.run_dir is None:
        return False
    ckpt.remove_stale_temp_files(state.run_dir)  # left by a process killed mid-write
    path = state.run_dir / ckpt.LAST
    if not path.exists():
        return False
    saved = ckpt.safe_load(path)
    ckpt.check_payload(saved, path, state.variant.run_key, swa=state.swa is not None)
    try:
        state.model.load_state_dict(saved["model"])
        state.optimizer.load_state_dict(saved["optimizer"])
        state.schedule.load_state_dict(saved["scheduler"])
        state.precision.load_state_dict(saved["scaler"])
        if state.swa is not None:
            state.swa.load_state_dict(saved["swa"])
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"cannot resume from {path}: it does not fit this variant ({first}). Delete it or run with --force."
        ) from None
    state.epoch, state.step, state.best_acc = (
        int(saved["epoch"]),
        int(saved["step"]),
        float(saved["best_acc"]),
    )
    state.history = [dict(r) for r in saved["history"]]
    state.extra = {**state.extra, **dict(saved.get("extra", {}))}
    state.extra["resumed_from_epoch"] = state.epoch
    ckpt.set_rng_state(saved["rng"])
    return True


def run_variant(
    variant: Variant,
    *,
    hooks: list[Hook] | tuple[Hook, ...] = (),
    run_dir: Path | None = None,
    progress: Any = None,
    device: torch.device | None = None,
) -> VariantResult:
    """Train and evaluate one variant. Raises VariantSkipped, Diverged or whatever a hook raises."""
    wall_start = time.perf_counter()
    state = build_state(variant, run_dir, device)
    cfg = variant.body.train
    criterion = build_loss(cfg.loss, cfg.label_smoothing)
    memory = PeakMemory(state.device)
    memory.reset()
    state.extra["_wall_start"] = wall_start
    resumed = try_resume(state)
    state.extra["resumed"] = resumed
    rng_at_resume = ckpt.rng_state() if resumed else None
    for hook in hooks:
        hook.on_start(state)
    if rng_at_resume is not None:  # hooks (MLflow, ...) must not shift the restored RNG streams
        ckpt.set_rng_state(rng_at_resume)
    meter = Throughput(state.device, cfg.warmup_steps)
    eval_rate: list[float] = []
    monitor = "val" if "val" in state.eval_loaders else "test"
    while state.epoch < cfg.epochs:
        epoch = state.epoch
        record = {"epoch": float(epoch), **state.lrs()}  # LRs in effect at the start of the epoch
        if progress is not None:
            progress.epoch_start(epoch, cfg.epochs)
        loss = train_one_epoch(state, criterion, meter, progress)
        if not math.isfinite(loss):
            raise Diverged(epoch, loss)
        record["train/loss"] = loss
        last_epoch = epoch == cfg.epochs - 1
        for split, loader in state.eval_loaders.items():
            if split == "test" and not (cfg.test_every_epoch or last_epoch):
                continue  # e.g. tuning: the test set is only looked at once, at the end
            acc, rate, _ = evaluate(state.model, loader, state.precision)
            record[f"{split}/acc"] = acc
            eval_rate.append(rate)
        if state.swa is not None and state.swa.active(epoch):
            state.swa.update(state.model)
        else:
            state.schedule.after_epoch(record.get(f"{monitor}/acc"))
        record["throughput/train_img_s"] = meter.images_per_second
        state.best_acc = max(state.best_acc, record.get("test/acc", float("-inf")))
        state.history.append(record)
        state.epoch += 1
        for hook in hooks:
            hook.on_epoch_end(state, epoch, record)
        if progress is not None:
            progress.epoch_end(epoch, cfg.epochs, record)
        every = cfg.checkpoint.every
        if every and (state.epoch % every == 0 or state.epoch == cfg.epochs):
            save_checkpoint(state)
        # "Best" follows the validation split when there is one: choosing by test accuracy
        # would select on the test set.
        score = record.get(f"{monitor}/acc", float("-inf"))
        if every and cfg.checkpoint.keep_best and score >= state.extra.get("best_monitor", float("-inf")):
            state.extra["best_monitor"] = score
            save_checkpoint(state, ckpt.BEST)  # the best epoch so far, whatever ``every`` says
    result = finish(state, meter, eval_rate, memory, wall_start)
    for hook in hooks:
        hook.on_end(state, result)
    return result


def finish(
    state: RunState, meter: Throughput, eval_rate: list[float], memory: PeakMemory, wall_start: float
) -> VariantResult:
    last = state.history[-1] if state.history else {}
    metrics: dict[str, float] = {
        "train/loss": last.get("train/loss", float("nan")),
        "test/acc": last.get("test/acc", float("nan")),
        "test/acc_best": state.best_acc,
        "throughput/train_img_s": meter.images_per_second,
        "throughput/eval_img_s": float(np.mean(eval_rate)) if eval_rate else float("nan"),
    }
    if "val/acc" in last:
        metrics["val/acc"] = last["val/acc"]
    if state.swa is not None:
        state.swa.finalize(state.train_loader, state.precision)
        metrics["test/acc_swa"], _, _ = evaluate(state.swa.model, state.eval_loaders["test"], state.precision)
    trainable, total = count_parameters(state.model)
    metrics["params/trainable"], metrics["params/total"] = float(trainable), float(total)
    metrics[memory.metric] = memory.peak_mb()
    metrics["time/wall_s"] = time.perf_counter() - wall_start + state.extra.get("wall_before_resume", 0.0)
    weights_path = None
    if state.run_dir is not None:
        weights_path = state.run_dir / "model.pt"
        ckpt.atomic_save(state.model.state_dict(), weights_path)
    return VariantResult(
        "finished",
        metrics=metrics,
        history=state.history,
        weights_path=str(weights_path) if weights_path else None,
    )
