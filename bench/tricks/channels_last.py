"""``train.channels_last``: weights and input batches in NHWC, which convolutions on tensor cores
prefer. Both, or the layout converts back and forth inside every convolution."""

from __future__ import annotations

from typing import Any

import torch

from bench.tricks import TRICKS
from bench.tricks.base import Trick


@TRICKS.register("channels_last")
class ChannelsLast(Trick):
    name = "channels_last"

    @classmethod
    def from_config(cls, train_cfg: Any) -> ChannelsLast | None:
        return cls() if train_cfg.channels_last else None

    def on_model(self, state: Any) -> None:
        state.model.to(memory_format=torch.channels_last)

    def on_setup(self, state: Any) -> None:
        for loader in state.loaders():
            loader.memory_format = torch.channels_last
