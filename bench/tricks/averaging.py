"""What SWA and EMA share: BatchNorm statistics recomputed for averaged weights without touching
frozen norms, and evaluation of an averaged model on every split under a metric suffix."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


@torch.no_grad()
def update_bn(loader: Any, model: nn.Module, frozen: set[str], precision: Any) -> None:
    """``torch.optim.swa_utils.update_bn``, except that norms named in ``frozen`` keep their
    running statistics (the pretrained ones) and stay in eval mode: a frozen stage must normalise
    as it did during training, not with statistics of the fine-tuning data."""
    norms = {
        name: m
        for name, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and name.removeprefix("module.") not in frozen
    }
    if not norms:
        return
    momenta = {}
    for name, module in norms.items():
        module.reset_running_stats()
        momenta[name] = module.momentum
        module.momentum = None  # cumulative average over the whole pass
    was_training = model.training
    model.train()
    for name, module in model.named_modules():
        if name.removeprefix("module.") in frozen:
            module.eval()
    loader.set_epoch(0)
    for x, _ in loader:
        with precision.autocast():
            model(x)
    for name, module in norms.items():
        module.momentum = momenta[name]
    model.train(was_training)


def evaluate_averaged(state: Any, model: nn.Module, suffix: str) -> dict[str, float]:
    """``<split>/acc_<suffix>`` for every evaluated split (val first, then test)."""
    out = {}
    for split, loader in state.eval_loaders.items():
        acc, _ = state.evaluate(model, loader)
        out[f"{split}/acc_{suffix}"] = acc
    return out
