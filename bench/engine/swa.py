"""Stochastic Weight Averaging: ``AveragedModel`` collects weights from ``start_epoch`` on while
``SWALR`` holds the LR; before evaluation the averaged model's BatchNorm statistics are
recomputed for its own weights (``AveragedModel`` copied the live model's buffers once, at
creation, and they no longer match the averaged weights)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import SWALR, AveragedModel, update_bn


class SWA:
    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, cfg):
        self.cfg = cfg
        self.model = AveragedModel(model)
        self.scheduler = SWALR(
            optimizer, swa_lr=cfg.lr, anneal_epochs=cfg.anneal_epochs, anneal_strategy=cfg.anneal_strategy
        )

    def active(self, epoch: int) -> bool:
        return epoch >= self.cfg.start_epoch

    def update(self, model: nn.Module) -> None:
        """After an SWA epoch: average the weights in, and step SWALR (instead of the main scheduler)."""
        self.model.update_parameters(model)
        self.scheduler.step()

    def finalize(self, train_loader: Any, precision: Any) -> None:
        """Recompute BatchNorm running statistics of the averaged weights on the training data."""
        train_loader.set_epoch(0)
        with precision.autocast():
            update_bn(train_loader, self.model, device=None)

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.scheduler.load_state_dict(state["scheduler"])
