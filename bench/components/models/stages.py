"""A model's stages, input first and classifier head last: the unit that ``train.freeze``
counts and that per-layer learning rates (``layer_decay``) step over. Where a model's own
library describes its structure (timm's ``group_matcher``, torchvision's families) that
description is used; otherwise the top-level children in definition order are the stages."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from bench.components.models.torchvision_models import head_path, is_torchvision_model, torchvision_stage_key


def classifier_names(model: nn.Module) -> set[str]:
    """Dotted prefixes of the classifier head's parameters (the part sized for the data)."""
    if is_torchvision_model(model):
        path = head_path(model)
        if path:
            return {path}
    cfg = getattr(model, "pretrained_cfg", None)
    if isinstance(cfg, dict) and cfg.get("classifier"):
        cls = cfg["classifier"]
        return set(cls) if isinstance(cls, (list, tuple)) else {cls}
    for attr in ("fc", "classifier", "head"):
        if isinstance(getattr(model, attr, None), nn.Module):
            return {attr}
    return {list(model.named_children())[-1][0]}


def head_matcher(model: nn.Module) -> Callable[[str], bool]:
    """Predicate: does this parameter (or state-dict key) belong to the head?"""
    head = classifier_names(model)
    return lambda name: any(name == h or name.startswith(h + ".") for h in head)


def _group_in_order(names: list[str], key: Callable[[str], str]) -> list[list[str]]:
    order: dict[str, list[str]] = {}
    for n in names:
        order.setdefault(key(n), []).append(n)
    return list(order.values())


def model_stages(model: nn.Module) -> list[list[str]]:
    """Parameter names grouped into stages, input first, classifier head last."""
    names = [n for n, _ in model.named_parameters()]
    is_head = head_matcher(model)
    body = [n for n in names if not is_head(n)]
    head_params = [n for n in names if is_head(n)]
    stages: list[list[str]]
    if is_torchvision_model(model):
        stages = _group_in_order(body, torchvision_stage_key(model))
    elif hasattr(model, "group_matcher"):
        from timm.models import group_parameters

        groups = group_parameters(model, model.group_matcher(coarse=True))
        stages = [[n for n in groups[g] if not is_head(n)] for g in sorted(groups)]
    else:
        stages = _group_in_order(body, lambda n: n.split(".")[0])
        # conv1 and bn1 as separate top-level children (ResNet-style code): one stem.
        if len(stages) > 1 and all(n.split(".")[0] in {"conv1", "bn1"} for n in stages[0] + stages[1]):
            stages = [stages[0] + stages[1], *stages[2:]]
    return [*(s for s in stages if s), head_params]
