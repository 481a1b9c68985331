"""Loss registry. Entries take ``label_smoothing`` so the recipe's setting reaches them."""

from __future__ import annotations

from torch import nn

from bench.registry import Registry

LOSSES: Registry[type[nn.Module]] = Registry("loss")
LOSSES.register("cross_entropy", nn.CrossEntropyLoss)


def build_loss(name: str, label_smoothing: float) -> nn.Module:
    return LOSSES.get(name)(label_smoothing=label_smoothing)
