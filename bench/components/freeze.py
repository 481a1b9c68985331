"""Freezing the first N stages for fine-tuning: frozen parameters get ``requires_grad=False``
(so they stay out of the optimizer) and frozen BatchNorm layers stay in eval mode, so their
running statistics do not drift while the rest trains."""

from __future__ import annotations

from torch import nn

from bench.components.models import model_stages
from bench.errors import RecipeError


def freeze_stages(model: nn.Module, n: int) -> list[nn.Module]:
    """Freeze the first ``n`` stages (stem first); return the norm layers to keep in eval mode."""
    if n == 0:
        return []
    stages = model_stages(model)
    body = len(stages) - 1  # the head is never frozen
    if n > body:
        raise RecipeError(
            f"cannot freeze {n} stages: this model has {body} stages before the head (allowed: 0..{body})",
            key="train.freeze",
        )
    frozen = {name for stage in stages[:n] for name in stage}
    for name, param in model.named_parameters():
        if name in frozen:
            param.requires_grad_(False)
    norms = []
    for mod_name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._NormBase):
            params = [f"{mod_name}.{p}" for p, _ in module.named_parameters(recurse=False)]
            if params and all(p in frozen for p in params):
                norms.append(module)
    return norms


def frozen_norm_names(model: nn.Module) -> set[str]:
    """Names of the norm layers whose parameters are all frozen: read from the model itself, so
    SWA's BN update needs no word from the freeze trick."""
    return {
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.modules.batchnorm._NormBase)
        and (params := list(module.parameters(recurse=False)))
        and not any(p.requires_grad for p in params)
    }
