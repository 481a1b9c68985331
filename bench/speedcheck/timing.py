"""One timing of one variant, in the process that calls it: the engine's own build
(``build_state``) and the engine's own step (``train_one_epoch`` over a slice of ``warmup + steps``
batches), timed by the engine's meter, with the contention monitor around it.

The model starts from initialisation (or the recipe's pretrained weights), not from the study's
trained weights: the per-step computation of these models runs the same kernels on the same shapes
whatever the weights' values, so the trained weights would cost a lookup of every run's export and
change nothing measured. Tricks are applied as at the start of training (epoch 0)."""

from __future__ import annotations

import math
import time
from typing import Any

from bench.engine.contention import ContentionMonitor, summarize
from bench.engine.loop import train_one_epoch
from bench.engine.measure import PeakMemory, Throughput
from bench.engine.state import build_state
from bench.recipe.load import Variant


class StepSlice:
    """``n`` batches of a loader, cycling over its epochs: one ``train_one_epoch`` call runs exactly
    ``n`` engine steps, however many batches an epoch of the data has."""

    def __init__(self, loader: Any, n: int):
        self.loader, self.n = loader, n

    def __len__(self) -> int:
        return self.n

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def __iter__(self):
        given = 0
        while given < self.n:
            for batch in self.loader:
                yield batch
                given += 1
                if given == self.n:
                    return


def time_steps(variant: Variant, steps: int, warmup: int) -> dict[str, float]:
    """Images per second over ``steps`` engine steps after ``warmup`` untimed ones."""
    from bench.components.schedulers import build_scheduler

    state = build_state(variant)
    train = variant.body.train
    total = warmup + steps
    per_epoch = len(state.train_loader)
    if total > train.epochs * per_epoch:  # a tiny recipe: a schedule that ends early would refuse the steps
        state.schedule = build_scheduler(
            state.optimizer,
            train.scheduler,
            epochs=train.epochs,
            steps_per_epoch=math.ceil(total / train.epochs),
        )
    state.train_loader = StepSlice(state.train_loader, total)
    memory = PeakMemory(state.device)
    memory.reset()
    meter = Throughput(state.device, warmup)
    monitor = ContentionMonitor(state.device, variant.body.report.contention_threshold)
    monitor.start()
    started = time.perf_counter()
    loss, _ = train_one_epoch(state, meter)
    record = {"time/train_epoch_s": time.perf_counter() - started, **monitor.stop()}
    return {
        "throughput/train_img_s": meter.images_per_second,
        "time/timed_s": meter.seconds,
        "images": float(meter.images),
        "train/loss": loss,
        memory.metric: memory.peak_mb(),
        **summarize([record], monitor.threshold),
    }
