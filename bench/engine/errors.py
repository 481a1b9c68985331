"""Ways a variant stops early; the runner records each as a status with its reason."""

from __future__ import annotations

from bench.errors import BenchError


class VariantSkipped(BenchError):
    """The variant cannot run here (e.g. amp_fp16 without CUDA): recorded as skipped."""


class Diverged(BenchError):
    """The training loss became NaN or infinite: recorded as failed with the epoch."""

    def __init__(self, epoch: int, loss: float):
        self.epoch = epoch
        super().__init__(f"loss became {loss} in epoch {epoch}")
