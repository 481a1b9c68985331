"""The one training loop, in reading order. ``run_variant`` is the single entry for running one
variant: the runner, the tuner and the resume check all reach it through ``run_recorded``.

    build     precision -> tricks -> seed -> data -> model (tricks.on_model) -> loaders
              -> optimizer -> schedule -> loss -> tricks.on_setup            (engine/state.py)
    resume    restore the last checkpoint of this run directory, if any; start the hooks
    epoch     tricks.on_epoch_start
              per batch: autocast forward -> backward -> tricks.after_backward (clip)
                         -> optimizer step -> tricks.after_step -> per-batch schedule
              evaluate val and test -> tricks.on_epoch_end (SWA) -> per-epoch schedule
              -> hooks.on_epoch_end -> checkpoint (and best.ckpt by validation)
    finish    final metrics -> tricks.finish (SWA/EMA evaluation) -> deliver (score and export the
              model a trick delivers; the trained weights' accuracy as */acc_raw) -> weights

Checkpoint storage (what a checkpoint holds, atomic writes, safe loading) is engine/checkpoint.py;
precision (autocast, GradScaler) is loop state, engine/precision.py.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.components.models import count_parameters
from bench.engine import checkpoint as ckpt
from bench.engine.contention import ContentionMonitor
from bench.engine.errors import Diverged
from bench.engine.evaluation import evaluate
from bench.engine.hooks import Hook, VariantResult
from bench.engine.measure import PeakMemory, Throughput
from bench.engine.state import RunState, build_state
from bench.recipe.load import Variant


def restore(state: RunState, hooks: list[Hook] | tuple[Hook, ...]) -> bool:
    """Restore the last checkpoint (if any), then start the hooks without letting them shift the
    restored RNG streams (MLflow and friends may draw random numbers when they start)."""
    resumed = ckpt.load_into(state)
    rng_at_resume = ckpt.rng_state() if resumed else None
    for hook in hooks:
        hook.on_start(state)
    if rng_at_resume is not None:
        ckpt.set_rng_state(rng_at_resume)
    return resumed


# The stepping rule, shared with ``bench plan`` (bench/plan/schedule.py) so the plan is what runs:
#   schedule.begin_step()        warm-up factor on the LRs, for this step only
#   optimizer step               (the plan: no gradients, parameters do not move)
#   tricks.after_step(stepped)   EMA update; SWA holds the per-batch schedule (returns False)
#   schedule.end_step(...)       restore LRs; per-batch scheduler steps only after a real step
#   tricks.on_epoch_end(record)  SWA averages and steps SWALR, holding the per-epoch schedule
#   schedule.after_epoch(val)    per-epoch and plateau schedulers (plateau on validation only)
def after_optimizer_step(state: Any, stepped: bool, batch_index: int) -> None:
    results = [trick.after_step(state, stepped) for trick in state.tricks]  # every trick, always
    state.schedule.end_step(stepped, state.epoch, batch_index, hold=not all(results))
    state.step += 1


def end_of_epoch(state: Any, record: dict[str, float]) -> None:
    results = [trick.on_epoch_end(state, record) for trick in state.tricks]
    if all(results):
        state.schedule.after_epoch(record.get("val/acc"))


def train_one_epoch(state: RunState, meter: Throughput, progress: Any = None) -> tuple[float, float]:
    """One pass over the training data; returns the mean training loss and the seconds the host
    waited for batches (data-wait: a loader that starves the device shows here, not as a trick)."""
    model, optimizer, precision, loader = state.model, state.optimizer, state.precision, state.train_loader
    model.train()
    for trick in state.tricks:
        trick.on_epoch_start(state)
    loader.set_epoch(state.epoch)
    loss_sum = torch.zeros((), device=state.device)  # summed on the device: no sync per step
    seen, waited = 0, 0.0
    meter.start()
    batches = iter(loader)
    for i in range(len(loader)):
        asked = time.perf_counter()
        x, y = next(batches)
        waited += time.perf_counter() - asked
        with precision.autocast():
            loss = state.criterion(state.forward(x), y)
        optimizer.zero_grad(set_to_none=True)
        precision.backward(loss)
        for trick in state.tricks:
            trick.after_backward(state)
        state.schedule.begin_step()
        stepped = precision.step(optimizer)
        after_optimizer_step(state, stepped, i)
        loss_sum += loss.detach() * y.shape[0]
        seen += y.shape[0]
        meter.step(y.shape[0])
        if progress is not None:
            progress.batch(i, len(loader), loss_sum, seen)
    meter.stop()
    return (loss_sum / max(seen, 1)).item(), waited


def evaluate_epoch(state: RunState, record: dict[str, float], eval_rates: dict[str, list[float]]) -> None:
    """Accuracy on every split due this epoch (test only at the end when the recipe says so)."""
    train = state.cfg.train
    last_epoch = state.epoch == train.epochs - 1
    for split, loader in state.eval_loaders.items():
        if split == "test" and not (train.test_every_epoch or last_epoch):
            continue  # e.g. tuning: the test set is only looked at once, at the end
        acc, rate = evaluate(state.model, loader, state.precision, tta=train.tta, forward=state.forward)
        record[f"{split}/acc"] = acc
        eval_rates.setdefault(split, []).append(rate)


def run_variant(variant: Variant, *, hooks: list[Hook] | tuple[Hook, ...] = (), run_dir: Path | None = None,
                progress: Any = None, device: torch.device | None = None) -> VariantResult:  # fmt: skip
    """Train and evaluate one variant. Raises VariantSkipped, Diverged or whatever a hook raises."""
    wall_start = time.perf_counter()
    state = build_state(variant, run_dir, device)
    setup_s = time.perf_counter() - wall_start  # this process's build (data, model, optimizer)
    train = variant.body.train
    memory = PeakMemory(state.device)
    memory.reset()
    state.meter = meter = Throughput(state.device, train.warmup_steps)
    restore(state, hooks)  # also the meter, rates and peak memory of a killed process
    eval_rates = state.eval_rates
    contention = ContentionMonitor(state.device, variant.body.report.contention_threshold)
    raw = any(t.delivers for t in state.tricks)  # epoch accuracy: the trained weights', not the delivered
    while state.epoch < train.epochs:
        epoch = state.epoch
        record = {"epoch": float(epoch), **state.lrs()}  # LRs in effect at the start of the epoch
        if progress is not None:
            progress.epoch_start(epoch, train.epochs)
        contention.start()
        started = time.perf_counter()
        loss, waited = train_one_epoch(state, meter, progress)  # ends in .item(): the device is synchronised
        record["time/train_epoch_s"] = time.perf_counter() - started  # training steps only
        record["time/data_wait_frac"] = waited / max(record["time/train_epoch_s"], 1e-9)
        record.update(contention.stop())  # did other processes compete for the cores/GPU meanwhile
        if not math.isfinite(loss):
            raise Diverged(epoch, loss)
        record["train/loss"] = loss
        started = time.perf_counter()
        evaluate_epoch(state, record, eval_rates)
        record["time/eval_epoch_s"] = time.perf_counter() - started
        end_of_epoch(state, record)
        record["throughput/train_img_s"] = meter.images_per_second
        state.history.append(record)
        state.epoch += 1
        for hook in hooks:
            hook.on_epoch_end(state, epoch, record)
        if progress is not None:
            progress.epoch_end(epoch, train.epochs, record, raw=raw)
        checkpoint_epoch(state, record, wall_start, memory)
    result = finish(state, meter, eval_rates, memory, wall_start)
    result.metrics["time/setup_s"] = setup_s
    result.metrics.update(contention.summary(state.history))
    for hook in hooks:
        hook.on_end(state, result)
    return result


def checkpoint_epoch(
    state: RunState, record: dict[str, float], wall_start: float, memory: PeakMemory
) -> None:
    """After an epoch: ``last.ckpt`` every ``checkpoint.every`` epochs and at the end; ``best.ckpt``
    when validation accuracy improves (never chosen on test: the schema requires a val split)."""
    every = state.cfg.train.checkpoint
    if not every.every:
        return
    if state.epoch % every.every == 0 or state.epoch == state.cfg.train.epochs:
        ckpt.save_checkpoint(state, wall_start, memory)
    score = record.get("val/acc")
    if every.keep_best and score is not None and score > state.best_val:
        state.best_val = score
        ckpt.save_checkpoint(state, wall_start, memory, ckpt.BEST)


def final_accuracies(history: list[dict[str, float]]) -> dict[str, float]:
    """Final test accuracy; the test accuracy at the best validation epoch where both exist; and
    the best test accuracy over epochs, named as the oracle it is (it selects on test)."""
    last = history[-1] if history else {}
    out = {"test/acc": last.get("test/acc", float("nan"))}
    if "val/acc" in last:
        out["val/acc"] = last["val/acc"]
    tested = [r for r in history if "test/acc" in r]
    if tested:
        out["test/acc_oracle"] = max(r["test/acc"] for r in tested)
    both = [r for r in tested if "val/acc" in r]
    if both and len(both) == len(history):
        best = max(both, key=lambda r: r["val/acc"])  # the first epoch with the best val/acc
        out["test/acc_at_best_val"] = best["test/acc"]
    return out


def finish(state: RunState, meter: Throughput, eval_rates: dict[str, list[float]], memory: PeakMemory,
           wall_start: float) -> VariantResult:  # fmt: skip
    last = state.history[-1] if state.history else {}
    metrics = {"train/loss": last.get("train/loss", float("nan")), **final_accuracies(state.history)}
    metrics["throughput/train_img_s"] = meter.images_per_second
    for split, rates in eval_rates.items():
        name = "throughput/eval_img_s" if split == "test" else f"throughput/eval_img_s/{split}"
        metrics[name] = float(np.nanmedian(rates))
    for trick in state.tricks:
        trick.finish(state, metrics)
    delivered = deliver(state, metrics)
    trainable, total = count_parameters(state.model)
    metrics["params/trainable"], metrics["params/total"] = float(trainable), float(total)
    peak = max(memory.peak_mb(), state.peak_mb_before)
    if state.device.type == "cuda":  # the resident data set is a constant: recorded apart from the peak
        data_mb = sum(t.nbytes for loader in state.loaders() for t in (loader.images, loader.labels)) / 2**20
        metrics["memory/data_gpu_mb"], peak = data_mb, peak - data_mb
    metrics[memory.metric] = peak
    metrics["time/wall_s"] = time.perf_counter() - wall_start + state.wall_before
    # wall time decomposed: training steps and per-epoch evaluation over every epoch (kept in the
    # checkpointed history, so a resumed run counts its earlier epochs too)
    for key, per_epoch in (("time/train_s", "time/train_epoch_s"), ("time/eval_s", "time/eval_epoch_s")):
        metrics[key] = float(sum(r.get(per_epoch, 0.0) for r in state.history))
    waits = [
        r["time/data_wait_frac"] * r["time/train_epoch_s"]
        for r in state.history
        if "time/data_wait_frac" in r
    ]
    metrics["time/data_wait_frac"] = float(sum(waits)) / max(metrics["time/train_s"], 1e-9)
    weights = ckpt.save_weights(state)
    return VariantResult("finished", metrics=metrics, history=state.history, weights_path=weights,
                         delivered=delivered)  # fmt: skip


RAW_SUFFIX = "raw"  # ``<split>/acc_raw``: the trained weights' accuracy, beside the delivered model's


def deliver(state: RunState, metrics: dict[str, float]) -> str:
    """Score the variant on the model it delivers: ``<split>/acc`` becomes that model's accuracy
    (the trick's ``<split>/acc_<name>``), the trained weights' stays as ``<split>/acc_raw``, and the
    delivered model is what gets exported. Returns its name ("weights" when no trick delivers)."""
    givers = [t for t in state.tricks if t.delivers]
    if len(givers) > 1:  # the schema refuses this; a user's own trick might not
        raise ValueError(f"tricks {', '.join(t.name for t in givers)} each deliver a model; turn on one")
    for split in state.eval_loaders:
        if f"{split}/acc" in metrics:
            metrics[f"{split}/acc_{RAW_SUFFIX}"] = metrics[f"{split}/acc"]
            if givers:
                metrics[f"{split}/acc"] = metrics[f"{split}/acc_{givers[0].delivers}"]
    if not givers:
        return "weights"
    state.export_model = givers[0].delivered_model()
    return givers[0].delivers
