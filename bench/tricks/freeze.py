"""Freezing the first N stages for fine-tuning (``train.freeze``): frozen parameters leave the
optimizer, and frozen BatchNorm layers stay in eval mode, so their running statistics (the
pretrained ones) neither drift while the rest trains nor get recomputed by SWA's BN update."""

from __future__ import annotations

from typing import Any

from bench.components.freeze import freeze_stages
from bench.tricks import TRICKS
from bench.tricks.base import Trick


@TRICKS.register("freeze")
class Freeze(Trick):
    name = "freeze"

    def __init__(self, stages: int):
        self.stages = stages
        self.frozen_norms: list = []  # the norm modules kept in eval mode

    @classmethod
    def from_config(cls, train_cfg: Any) -> Freeze | None:
        return cls(train_cfg.freeze) if train_cfg.freeze else None

    def on_model(self, state: Any) -> None:
        self.frozen_norms = freeze_stages(state.model, self.stages)

    def on_epoch_start(self, state: Any) -> None:
        for module in self.frozen_norms:
            module.eval()
