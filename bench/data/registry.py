"""Data set sources by name. The entries are thin wrappers so that validating a recipe (which
checks ``data.name`` here) does not import torchvision."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.components.registry import Registry

if TYPE_CHECKING:
    from bench.data.sources import RawData

DATASETS: Registry[Any] = Registry("data set")


@DATASETS.register("cifar10")
def cifar10(root: Path, cfg: Any) -> RawData:
    """CIFAR-10 from a local copy (pickled batches, ImageFolder or the JPEG archive)."""
    from bench.data.sources import cifar10 as source

    return source(root, cfg)


@DATASETS.register("imagefolder")
def imagefolder(root: Path, cfg: Any) -> RawData:
    """Any ``train/<class>/*`` + ``test/<class>/*`` (or ``val/``) folder."""
    from bench.data.sources import imagefolder as source

    return source(root, cfg)
