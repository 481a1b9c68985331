"""The input statistics a model's starting weights were trained with. Frozen (and barely moved)
pretrained stages expect inputs normalised the way they saw them in pretraining, not with the
fine-tuning set's own mean/std; this says what that was, without downloading anything."""

from __future__ import annotations

from torch import nn

from bench.components.models.torchvision_models import torchvision_name
from bench.components.models.weights import read_weights_meta

Stats = tuple[tuple[float, ...], tuple[float, ...]]


def pretrained_stats(model_cfg, model: nn.Module | None = None) -> Stats | None:
    """(mean, std) in [0, 1] units of the weights ``model_cfg`` (a ModelConfig) starts from.

    - ``model.weights: PATH``: the ``PATH.json`` sidecar a bench run saved beside it (None if
      absent: the file's origin is unknown). A weights file overrides ``pretrained``.
    - ``model.pretrained: true``: torchvision's ``Weights.DEFAULT.transforms()`` mean/std, or the
      ``pretrained_cfg`` mean/std of a timm (or any) model that carries one.
    - otherwise None: a model trained from scratch has no statistics of its own.
    """
    if model_cfg.weights:
        meta = read_weights_meta(model_cfg.weights)
        return (meta["mean"], meta["std"]) if meta else None
    if not model_cfg.pretrained:
        return None
    tv_name = torchvision_name(model_cfg.name)
    if tv_name is not None:  # the DEFAULT weights' preprocessing transform says; nothing is downloaded
        import torchvision

        transform = torchvision.models.get_model_weights(tv_name).DEFAULT.transforms()
        mean, std = getattr(transform, "mean", None), getattr(transform, "std", None)
    else:
        cfg = getattr(model, "pretrained_cfg", None)
        mean, std = (cfg.get("mean"), cfg.get("std")) if isinstance(cfg, dict) else (None, None)
    if not mean or not std:
        return None
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)
