"""``train.label_smoothing``: the loss spreads ``eps`` of each target's mass over all classes."""

from __future__ import annotations

from typing import Any

from bench.tricks import TRICKS
from bench.tricks.base import Trick


@TRICKS.register("label_smoothing")
class LabelSmoothing(Trick):
    name = "label_smoothing"

    def __init__(self, eps: float):
        self.eps = eps

    @classmethod
    def from_config(cls, train_cfg: Any) -> LabelSmoothing | None:
        return cls(train_cfg.label_smoothing) if train_cfg.label_smoothing else None

    def on_setup(self, state: Any) -> None:
        from bench.components.losses import takes_label_smoothing

        if hasattr(state.criterion, "label_smoothing"):
            state.criterion.label_smoothing = self.eps
        elif not takes_label_smoothing(type(state.criterion)):
            raise ValueError(
                f"train.label_smoothing: loss {type(state.criterion).__name__} has no label_smoothing"
            )
        # else: its constructor took label_smoothing=eps (bench.components.losses.build_loss)
