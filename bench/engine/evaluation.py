"""Evaluation: top-1 accuracy over a whole split in eval mode, with optional flip test-time
augmentation, and warm throughput (the first batch, which pays for allocation, cuDNN autotuning
or compilation, is not timed)."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn

from bench.engine.measure import synchronize


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader,
    precision,
    *,
    tta: str = "none",
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[float, float]:
    """(top-1 accuracy, warm images/s) over the whole loader, in eval mode."""
    forward = forward or model
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=loader.device)
    timed_images, start = 0, None
    first_timed = 1 if len(loader) > 1 else 0  # a single batch is timed cold: there is no other
    for i, (x, y) in enumerate(loader):
        if i == first_timed:  # the first batch warms up; time the rest
            synchronize(loader.device)
            start = time.perf_counter()
        with precision.autocast():
            logits = forward(x)
            if tta == "flip":
                logits = logits + forward(x.flip(3))
        correct += (logits.argmax(1) == y).sum()
        if i >= first_timed:
            timed_images += len(y)
    accuracy = correct.item() / max(loader.num_images, 1)  # .item() synchronises
    seconds = time.perf_counter() - start if start is not None else 0.0
    model.train(was_training)
    return accuracy, timed_images / seconds if seconds > 0 else float("nan")
