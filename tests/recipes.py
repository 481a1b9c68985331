"""Tiny recipes for tests: real training on a generated image folder, CPU-sized (seconds)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from bench.recipe.dotted import set_dotted


def tiny_recipe(data_root: Path, name: str = "tiny", **dotted: Any) -> dict[str, Any]:
    """A one-variant recipe on ``data_root`` (an ImageFolder); ``dotted`` keys override it."""
    recipe: dict[str, Any] = {
        "name": name,
        "data": {"name": "imagefolder", "root": str(data_root), "batch_size": 32, "eval_batch_size": 64},
        "model": {"name": "test_resnet"},
        "train": {
            "epochs": 2,
            "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
            "scheduler": {"name": "cosine"},
            "warmup_steps": 1,
        },
        "seeds": [0],
    }
    for key, value in dotted.items():
        if key == "matrix":
            recipe["matrix"] = copy.deepcopy(value)
        else:
            set_dotted(recipe, key.replace("__", "."), value)
    return recipe


def write_recipe(path: Path, recipe: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path
