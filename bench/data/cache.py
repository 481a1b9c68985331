"""Variants of one recipe usually share their data: decode and split it once per process."""

from __future__ import annotations

from bench.data.splits import DataSplits, load_splits

_SPLITS: dict[str, DataSplits] = {}


def cached_splits(data_cfg) -> DataSplits:
    key = data_cfg.model_dump_json(exclude={"normalize", "batch_size", "eval_batch_size", "augment"})
    if key not in _SPLITS:
        _SPLITS.clear()  # one data set at a time: CIFAR-10 as uint8 is 150 MB
        _SPLITS[key] = load_splits(data_cfg)
    return _SPLITS[key]


def shared() -> dict[str, DataSplits]:
    """The splits decoded in this process, moved to shared memory for child processes."""
    for splits in _SPLITS.values():
        for part in (splits.train, splits.val, splits.test):
            if part is not None:
                part.images.share_memory_()
                part.labels.share_memory_()
    return dict(_SPLITS)


def prime(splits: dict[str, DataSplits]) -> None:
    """Use splits a parent process decoded (see ``shared``)."""
    _SPLITS.update(splits)
