"""Optimizer registry and per-layer parameter groups.

Per-layer learning rates are written into each param group's ``lr`` (not kept as a side
"lr_scale"), so every torch scheduler scales them together and keeps the ratios.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bench.components.models import model_stages
from bench.components.registry import Registry
from bench.components.signature import check_kwargs

OPTIMIZERS: Registry[type[torch.optim.Optimizer]] = Registry("optimizer", {
    "sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad, "nadam": torch.optim.NAdam,
})  # fmt: skip

# Recipe keys that bench consumes itself rather than passing to the torch class.
OWN_KEYS = ("params", "lr", "weight_decay")


def check_optimizer(name: str, kwargs: dict[str, Any]) -> None:
    cls = OPTIMIZERS.get(name)
    check_kwargs(cls, kwargs, what=f"optimizer '{name}'", skip=OWN_KEYS)


def try_optimizer(cfg) -> torch.optim.Optimizer:
    """Build an OptimizerConfig's optimizer on one dummy parameter. torch checks argument values
    (``betas``, ``eps``, ``momentum`` ...) only in the constructor: unchecked, a bad value failed
    every run of the recipe inside its recorded run (``IndexError: list index out of range``)."""
    cls = OPTIMIZERS.get(cfg.name)
    param = torch.zeros(1, requires_grad=True)
    try:
        return cls([param], lr=cfg.lr, weight_decay=cfg.weight_decay, **cfg.kwargs)
    except (ValueError, TypeError, IndexError, KeyError, RuntimeError) as exc:
        given = ", ".join(f"{k}={v!r}" for k, v in cfg.kwargs.items()) or f"lr={cfg.lr!r}"
        raise ValueError(f"optimizer '{cfg.name}' refuses {given}: {type(exc).__name__}: {exc}") from None


def build_param_groups(model: nn.Module, cfg) -> list[dict[str, Any]]:
    """Param groups from an OptimizerConfig: per-stage LR and no decay for norm/bias.

    Stage i of S (head = S-1) gets ``lr * layer_decay ** (S-1-i)``; the head gets
    ``lr * head_lr_mult``. Frozen parameters (``requires_grad=False``) are left out.
    """
    stages = model_stages(model)
    last = len(stages) - 1
    # readable group names: stem, stage1..stageN, head
    names = ["stem", *(f"stage{i}" for i in range(1, last)), "head"] if last else ["head"]
    stage_of = {p: i for i, stage in enumerate(stages) for p in stage}
    per_layer = cfg.layer_decay != 1.0 or cfg.head_lr_mult != 1.0
    groups: dict[str, dict[str, Any]] = {}
    for pname, param in model.named_parameters():
        if not param.requires_grad:
            continue
        i = stage_of.get(pname, last)
        scale = cfg.head_lr_mult if i == last else cfg.layer_decay ** (last - i)
        no_decay = cfg.no_decay_norm_bias and param.ndim <= 1
        label = (names[i] if per_layer else "all") + ("_no_decay" if no_decay else "")
        group = groups.setdefault(
            label,
            {
                "name": label,
                "params": [],
                "lr": cfg.lr * scale,
                "lr_scale": scale,  # this group's LR relative to the recipe's (for logging)
                "weight_decay": 0.0 if no_decay else cfg.weight_decay,
            },
        )
        group["params"].append(param)
    return list(groups.values())


def build_optimizer(model: nn.Module, cfg) -> torch.optim.Optimizer:
    cls = OPTIMIZERS.get(cfg.name)
    groups = build_param_groups(model, cfg)
    if not groups:
        raise ValueError("no trainable parameters: every parameter is frozen")
    return cls(groups, lr=cfg.lr, **cfg.kwargs)
