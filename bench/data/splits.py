"""Turn a data set into the train/val/test splits a recipe asks for. Every random choice is
seeded from the recipe, so two variants (or a resumed run) see exactly the same images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from bench.data.registry import DATASETS
from bench.data.sources import RawData
from bench.errors import DataError
from bench.recipe.schema import DataConfig
from bench.util.dataroot import data_root

STATS_IMAGES = 10_000


@dataclass
class ImageSet:
    """Images uint8 N×3×H×W and labels int64 N, kept on the CPU until a loader moves them."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: torch.Tensor) -> ImageSet:
        return ImageSet(self.images[index], self.labels[index])


@dataclass
class DataSplits:
    train: ImageSet
    val: ImageSet | None
    test: ImageSet
    classes: list[str]
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def resolve_root(cfg: DataConfig) -> Path:
    """``data.root``, else ``$BENCH_DATA_DIR``, else ``data/`` (bench/util/dataroot.py)."""
    return data_root(cfg.root)


def _check(raw: RawData, name: str) -> None:
    """Catch a user source returning the wrong shapes here, not deep inside training."""
    for split in ("train", "test"):
        images, labels = getattr(raw, f"{split}_images"), getattr(raw, f"{split}_labels")
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise DataError(
                f"data set '{name}': {split}_images must be uint8 N×3×H×W, got "
                f"{images.dtype} {tuple(images.shape)}"
            )
        if labels.dtype != torch.int64 or labels.shape != (len(images),):
            raise DataError(f"data set '{name}': {split}_labels must be int64 of length {len(images)}")
        if len(labels) and int(labels.max()) >= len(raw.classes):
            raise DataError(
                f"data set '{name}': {split} label {int(labels.max())} >= {len(raw.classes)} classes"
            )


def _class_ids(wanted: list[str] | list[int], classes: list[str]) -> list[int]:
    ids = []
    for item in wanted:
        if isinstance(item, int):
            if not 0 <= item < len(classes):
                raise DataError(f"data.classes: index {item} out of range; there are {len(classes)} classes")
            ids.append(item)
        elif item in classes:
            ids.append(classes.index(item))
        else:
            raise DataError(f"data.classes: unknown class '{item}'; classes: {', '.join(classes)}")
    if len(set(ids)) != len(ids):
        raise DataError(f"data.classes lists a class twice: {wanted}")
    return ids


def _keep_classes(images: torch.Tensor, labels: torch.Tensor, ids: list[int], n: int) -> ImageSet:
    lut = torch.full((n,), -1, dtype=torch.int64)
    lut[torch.tensor(ids)] = torch.arange(len(ids))
    new = lut[labels]
    keep = new >= 0
    return ImageSet(images[keep], new[keep])


def _draw(n: int, k: int, seed: int) -> torch.Tensor:
    """k of n indices, reproducible from the seed, in ascending order."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k].sort().values


def _subset(data: ImageSet, k: int | None, seed: int, key: str) -> ImageSet:
    if k is None:
        return data
    if k > len(data):
        raise DataError(f"{key}={k} is larger than the {len(data)} images available")
    return data.take(_draw(len(data), k, seed))


def subset_text(cfg: DataConfig) -> str:
    return f"data.subset={cfg.subset}" if cfg.subset else "the training split"


def classes_without_images(splits: DataSplits) -> list[str]:
    """The classes no training image is left of (a small ``data.subset`` draws them at random)."""
    counts = torch.bincount(splits.train.labels, minlength=splits.num_classes)
    return [name for name, n in zip(splits.classes, counts.tolist(), strict=True) if n == 0]


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] units, from at most 10,000 evenly spaced images."""
    if len(images) > STATS_IMAGES:
        images = images[torch.linspace(0, len(images) - 1, STATS_IMAGES).long()]
    total = torch.zeros(3, dtype=torch.float64)
    squares = torch.zeros(3, dtype=torch.float64)
    for chunk in images.split(2048):
        x = chunk.to(torch.float32).div_(255).transpose(0, 1).reshape(3, -1)
        total += x.sum(1, dtype=torch.float64)
        squares += x.square().sum(1, dtype=torch.float64)
    count = images[:, 0].numel()
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(1e-12).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def load_splits(cfg: DataConfig) -> DataSplits:
    """Load the data set, keep ``classes``, carve ``val_size`` from train, then draw subsets."""
    root = resolve_root(cfg)
    raw = DATASETS.get(cfg.name)(root, cfg)
    _check(raw, cfg.name)
    classes = list(raw.classes)
    train = ImageSet(raw.train_images, raw.train_labels)
    test = ImageSet(raw.test_images, raw.test_labels)
    if cfg.classes is not None:
        ids = _class_ids(cfg.classes, classes)
        train = _keep_classes(train.images, train.labels, ids, len(classes))
        test = _keep_classes(test.images, test.labels, ids, len(classes))
        classes = [classes[i] for i in ids]

    val = None
    n_val = round(cfg.val_size * len(train)) if isinstance(cfg.val_size, float) else cfg.val_size
    if n_val:
        if n_val >= len(train):
            raise DataError(
                f"data.val_size={cfg.val_size} leaves no training images (train has {len(train)})"
            )
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.val_seed))
        val = train.take(order[:n_val].sort().values)
        train = train.take(order[n_val:].sort().values)

    train = _subset(train, cfg.subset, cfg.subset_seed, "data.subset")
    test = _subset(test, cfg.test_subset, cfg.subset_seed, "data.test_subset")
    if len(train) == 0:
        raise DataError(f"data set '{cfg.name}' at {root} has no training images left after filtering")
    if len(train) < 2:  # BatchNorm cannot train on a batch of one: every run would fail in its first step
        raise DataError(
            f"{subset_text(cfg)} leaves 1 training image: a training batch needs at least 2 "
            "(BatchNorm); set data.subset to 2 or more"
        )
    mean, std = channel_stats(train.images)
    return DataSplits(train, val, test, classes, len(classes), mean, std)  # type: ignore[arg-type]
