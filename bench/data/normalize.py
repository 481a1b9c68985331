"""Which statistics normalise the inputs (``data.normalize``).

Weights expect the statistics they were trained with: frozen stages of an ImageNet-pretrained
network expect ImageNet's mean/std, and weights a bench run saved expect the statistics of that
run, saved beside them (``<weights>.json``). ``auto`` uses those when the start weights carry
them, else the fine-tuning train split's own. What was used is recorded with the run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

Stats = tuple[tuple[float, ...], tuple[float, ...]]


def sidecar(weights_path: str | Path) -> Path:
    return Path(str(weights_path) + ".json")


def write_sidecar(weights_path: str | Path, mean, std, source: str) -> None:
    from bench.fileio import atomic_write_text

    payload = {"mean": [float(m) for m in mean], "std": [float(s) for s in std], "normalize": source}
    atomic_write_text(sidecar(weights_path), json.dumps(payload, indent=1))


def weights_stats(model_cfg: Any, model: Any) -> tuple[Stats, str] | None:
    """The start weights' own statistics and where they came from, or None."""
    if model_cfg.weights:
        path = sidecar(model_cfg.weights)
        if path.is_file():
            saved = json.loads(path.read_text())
            return (tuple(saved["mean"]), tuple(saved["std"])), f"weights:{path.name}"
        return None
    if model_cfg.pretrained:
        cfg = getattr(model, "pretrained_cfg", None) or {}
        if "mean" in cfg and "std" in cfg:
            return (tuple(cfg["mean"]), tuple(cfg["std"])), "pretrained_cfg"
        if model_cfg.name.startswith("torchvision:"):
            return ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), "torchvision_imagenet"
    return None


def resolve(data_cfg: Any, model_cfg: Any, model: Any, train_stats: Stats) -> tuple[Stats, str]:
    """(mean, std) for the loaders and a label for the record (e.g. ``train``, ``pretrained_cfg``)."""
    choice = data_cfg.normalize
    if not isinstance(choice, str):
        return (tuple(choice.mean), tuple(choice.std)), "explicit"
    if choice == "train":
        return train_stats, "train"
    found = weights_stats(model_cfg, model)
    if found is not None:
        return found
    if choice == "pretrained":
        from bench.errors import RecipeError

        raise RecipeError(
            "data.normalize is 'pretrained' but the start weights carry no statistics (no pretrained_cfg, "
            "no <weights>.json beside model.weights); use 'train' or explicit {mean, std}",
            key="data.normalize",
        )
    return train_stats, "train"
