"""``train.grad_clip``: clip the global gradient norm, on gradients at their true scale (AMP's
scaler unscales them first). ``clip_grad_norm_`` returns a tensor: no sync."""

from __future__ import annotations

from typing import Any

from torch import nn

from bench.tricks import TRICKS
from bench.tricks.base import Trick


@TRICKS.register("grad_clip")
class GradClip(Trick):
    name = "grad_clip"

    def __init__(self, max_norm: float):
        self.max_norm = max_norm

    @classmethod
    def from_config(cls, train_cfg: Any) -> GradClip | None:
        return cls(train_cfg.grad_clip) if train_cfg.grad_clip is not None else None

    def after_backward(self, state: Any) -> None:
        state.precision.unscale(state.optimizer)
        nn.utils.clip_grad_norm_(state.model.parameters(), self.max_norm)
