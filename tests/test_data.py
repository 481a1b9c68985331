"""The data layer as a user sees it: what load_splits returns for a recipe's data section, the
errors a wrong setup gets, the decode cache, and the device loader's batches."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
import torch

from bench.data.loader import DeviceLoader
from bench.data.registry import DATASETS
from bench.data.sources import cifar10, imagefolder
from bench.data.splits import load_splits
from bench.errors import DataError
from bench.recipe.schema import AugmentConfig, DataConfig


def splits(root: Path, **kwargs):
    return load_splits(DataConfig(name="imagefolder", root=str(root), **kwargs))


def image_keys(images: torch.Tensor) -> set[bytes]:
    return {img.numpy().tobytes() for img in images}


def loader(data, labels=None, **kwargs) -> DeviceLoader:
    args = dict(
        batch_size=32,
        device="cpu",
        shuffle=True,
        drop_last=False,
        augment=None,
        mean=data.mean,
        std=data.std,
        image_size=None,
        seed=0,
    )
    labels = data.train.labels if labels is None else labels
    return DeviceLoader(data.train.images, labels, **{**args, **kwargs})


def epoch(dl: DeviceLoader, e: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    if e is not None:
        dl.set_epoch(e)
    xs, ys = zip(*dl)
    return torch.cat(xs), torch.cat(ys)


# --- load_splits -------------------------------------------------------------------------------


def test_image_folder_loads_with_shapes_and_class_names(tiny_image_folder):
    data = splits(tiny_image_folder)
    assert data.classes == ["blue", "gray", "green", "red"] and data.num_classes == 4
    assert data.train.images.shape == (160, 3, 32, 32) and data.train.images.dtype == torch.uint8
    assert data.test.images.shape == (48, 3, 32, 32) and len(data.test) == 48
    assert data.train.labels.dtype == torch.int64 and data.train.labels.bincount().tolist() == [40] * 4
    assert data.val is None
    red = data.train.images[data.train.labels == 3].float().mean((0, 2, 3))
    assert red[0] > red[1] + 50 and red[0] > red[2] + 50
    assert len(data.mean) == len(data.std) == 3
    assert all(0.1 < m < 0.7 for m in data.mean) and all(0.0 < s < 0.5 for s in data.std)


def test_root_defaults_to_bench_data_dir(tiny_image_folder, monkeypatch):
    monkeypatch.setenv("BENCH_DATA_DIR", str(tiny_image_folder))
    assert len(load_splits(DataConfig(name="imagefolder")).train) == 160


def test_source_can_be_named_by_import_path(tiny_image_folder):
    data = load_splits(DataConfig(name="bench.data.sources:imagefolder", root=str(tiny_image_folder)))
    assert data.classes == ["blue", "gray", "green", "red"]


def test_classes_filter_keeps_order_and_remaps_labels(tiny_image_folder):
    data = splits(tiny_image_folder, classes=["red", "blue"])
    assert data.classes == ["red", "blue"] and data.num_classes == 2
    assert len(data.train) == 80 and len(data.test) == 24
    assert set(data.train.labels.tolist()) == {0, 1}
    reds = data.train.images[data.train.labels == 0].float().mean((0, 2, 3))
    assert reds[0] > reds[2] + 50  # label 0 is now "red"
    by_index = splits(tiny_image_folder, classes=[3, 0])
    assert by_index.classes == ["red", "blue"]
    assert torch.equal(by_index.train.labels, data.train.labels)


def test_unknown_class_lists_the_classes(tiny_image_folder):
    with pytest.raises(DataError, match="unknown class 'purple'.*blue, gray, green, red"):
        splits(tiny_image_folder, classes=["red", "purple"])


def test_val_split_is_disjoint_and_reproducible(tiny_image_folder):
    a = splits(tiny_image_folder, val_size=0.25, val_seed=1)
    assert len(a.val) == 40 and len(a.train) == 120
    assert not image_keys(a.val.images) & image_keys(a.train.images)
    b = splits(tiny_image_folder, val_size=0.25, val_seed=1)
    assert torch.equal(a.val.images, b.val.images) and torch.equal(a.train.labels, b.train.labels)
    c = splits(tiny_image_folder, val_size=0.25, val_seed=2)
    assert not torch.equal(a.val.images, c.val.images)
    assert len(splits(tiny_image_folder, val_size=10).val) == 10


def test_subset_is_reproducible_and_checked(tiny_image_folder):
    a = splits(tiny_image_folder, subset=20, test_subset=8, subset_seed=5)
    b = splits(tiny_image_folder, subset=20, test_subset=8, subset_seed=5)
    c = splits(tiny_image_folder, subset=20, subset_seed=6)
    assert len(a.train) == 20 and len(a.test) == 8
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.images, b.test.images)
    assert not torch.equal(a.train.images, c.train.images)
    with pytest.raises(DataError, match=r"data\.subset=1000 .* 160 images"):
        splits(tiny_image_folder, subset=1000)
    with pytest.raises(DataError, match=r"data\.test_subset=49 .* 48 images"):
        splits(tiny_image_folder, test_subset=49)


# --- errors ------------------------------------------------------------------------------------


def test_missing_image_folder_names_root_and_layout(tmp_path):
    root = tmp_path / "nowhere"
    with pytest.raises(DataError) as info:
        imagefolder(root)
    message = str(info.value)
    assert str(root) in message and "train/<class>" in message and "test/<class>" in message


def test_missing_cifar10_names_root_layouts_and_archive(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_OFFLINE", "1")
    with pytest.raises(DataError) as info:
        load_splits(DataConfig(name="cifar10", root=str(tmp_path)))
    message = str(info.value)
    for needle in (
        str(tmp_path),
        "cifar-10-batches-py",
        "train/<class>",
        "cifar10-jpeg.tar.gz",
        "data.root",
        "BENCH_DATA_DIR",
    ):
        assert needle in message


def test_failed_cifar10_download_leaves_no_empty_data_dir(tmp_path, monkeypatch):
    """First hour: `BENCH_DATA_DIR=~/data/cifar bench run ...` offline created ~/data/cifar, failed
    the download, and left the empty folder behind, so the next look at it suggested data was there.
    A folder the user made stays (with what they put in it)."""
    from torchvision.datasets import CIFAR10

    monkeypatch.delenv("BENCH_OFFLINE", raising=False)
    monkeypatch.setattr(CIFAR10, "url", "http://127.0.0.1:9/cifar-10-python.tar.gz")  # refused at once
    root = tmp_path / "data" / "cifar"
    with pytest.raises(DataError, match="the download failed"):
        load_splits(DataConfig(name="cifar10", root=str(root)))
    assert not root.exists()
    root.mkdir()
    (root / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="the download failed"):
        load_splits(DataConfig(name="cifar10", root=str(root)))
    assert (root / "notes.txt").read_text() == "mine"


def test_data_dir_pointing_at_the_archive_itself_loads_it(tiny_image_folder, tmp_path, monkeypatch):
    """First hour: `BENCH_DATA_DIR=/work/shared/data/cifar10-jpeg.tar.gz bench run ...` (the file a
    user was given, not its folder) tried a download into the file and failed with "[Errno 17] File
    exists". The archive now stands for its folder, run key included; another file is named as such."""
    import tarfile

    from bench.execution.identity import data_fingerprint

    monkeypatch.setenv("BENCH_OFFLINE", "1")
    archive = tmp_path / "given" / "cifar10-jpeg.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        for split in ("train", "test"):
            tar.add(tiny_image_folder / split, arcname=f"cifar10/{split}")
    monkeypatch.setenv("BENCH_DATA_DIR", str(archive))
    by_file = load_splits(DataConfig(name="cifar10"))
    by_folder = load_splits(DataConfig(name="cifar10", root=str(archive.parent)))
    assert torch.equal(by_file.train.images, by_folder.train.images) and len(by_file.test) == 48
    assert (
        data_fingerprint(DataConfig(name="cifar10"))
        == data_fingerprint(DataConfig(name="cifar10", root=str(archive.parent)))
        != "missing"
    )
    other = tmp_path / "cifar10.zip"
    other.write_bytes(b"PK")
    with pytest.raises(DataError, match=r"cifar10\.zip is a file, not a folder: point data\.root"):
        load_splits(DataConfig(name="cifar10", root=str(other)))


def test_truncated_jpeg_is_an_error_naming_the_file(tiny_image_folder, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(tiny_image_folder, root)
    bad = root / "train" / "green" / "0007.jpg"
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(DataError, match="0007.jpg"):
        splits(root)


def test_decoded_images_are_cached(tiny_image_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "copy"
    shutil.copytree(tiny_image_folder, root)
    first = imagefolder(root)
    assert len(list((tmp_path / "cache").rglob("*.pt"))) == 1
    # Blank a file but keep its size and mtime: only a cache hit can still return its pixels.
    victim = root / "train" / "red" / "0000.jpg"
    stat = victim.stat()
    victim.write_bytes(b"\0" * stat.st_size)
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second = imagefolder(root)
    assert torch.equal(first.train_images, second.train_images) and first.classes == second.classes
    # Adding a file changes the fingerprint, so the folder is decoded again (and the blank file fails).
    shutil.copy(root / "train" / "red" / "0001.jpg", root / "train" / "red" / "extra.jpg")
    with pytest.raises(DataError, match="0000.jpg"):
        imagefolder(root)


# --- DeviceLoader ------------------------------------------------------------------------------


def test_epoch_order_is_reproducible_and_changes_across_epochs(tiny_image_folder):
    data = splits(tiny_image_folder)
    aug = AugmentConfig(crop_padding=4, flip=True)
    first, second = loader(data, augment=aug, seed=3), loader(data, augment=aug, seed=3)
    x0, y0 = epoch(first)  # no set_epoch: epochs count 0, 1, ...
    x1, y1 = epoch(first)
    assert not torch.equal(y0, y1)
    rx1, ry1 = epoch(second, 1)  # a resumed run asking for epoch 1 sees the same batches
    assert torch.equal(rx1, x1) and torch.equal(ry1, y1)
    rx0, _ = epoch(second, 0)
    assert torch.equal(rx0, x0)
    _, other_seed = epoch(loader(data, augment=aug, seed=4), 0)
    assert not torch.equal(other_seed, y0)


def test_every_image_is_visited_once_per_epoch(tiny_image_folder):
    data = splits(tiny_image_folder)
    ids = torch.arange(len(data.train))
    dl = loader(data, labels=ids, batch_size=48)  # label each image by its index
    assert len(dl) == 4 and dl.num_images == 160
    _, seen = epoch(dl, 0)
    assert torch.equal(seen.sort().values, ids) and not torch.equal(seen, ids)
    dropped = loader(data, batch_size=48, drop_last=True)
    assert len(dropped) == 3 and [len(y) for _, y in dropped] == [48, 48, 48]


def test_normalised_train_set_has_zero_mean_unit_std(tiny_image_folder):
    data = splits(tiny_image_folder)
    x, _ = epoch(loader(data, shuffle=False))
    assert x.dtype == torch.float32 and x.shape == (160, 3, 32, 32)
    assert x.mean((0, 2, 3)).abs().max() < 1e-3
    assert (x.std((0, 2, 3)) - 1).abs().max() < 1e-2


def test_flip_and_crop_change_pixels_but_not_shape(tiny_image_folder):
    data = splits(tiny_image_folder)
    plain, _ = epoch(loader(data, shuffle=False))
    flipped, _ = epoch(loader(data, shuffle=False, augment=AugmentConfig(crop_padding=0, flip=True)))
    is_same = (flipped == plain).flatten(1).all(1)
    is_mirror = (flipped == plain.flip(3)).flatten(1).all(1)
    assert (is_same | is_mirror).all() and 0 < is_mirror.sum() < len(plain)
    cropped, _ = epoch(loader(data, shuffle=False, augment=AugmentConfig(crop_padding=4, flip=False)))
    assert cropped.shape == plain.shape and not torch.equal(cropped, plain)
    # each crop is a window of the zero-padded image (padding is black, i.e. -mean/std after normalising)
    padded = torch.nn.functional.pad(data.train.images, (4, 4, 4, 4)).float()
    mean = torch.tensor(data.mean).view(3, 1, 1) * 255
    std = torch.tensor(data.std).view(3, 1, 1) * 255
    for i in range(5):
        raw = cropped[i] * std + mean
        windows = [padded[i, :, dy : dy + 32, dx : dx + 32] for dy in range(9) for dx in range(9)]
        assert any((raw - w).abs().max() < 1e-2 for w in windows)


def test_resize_and_autoaugment(tiny_image_folder):
    data = splits(tiny_image_folder)
    aug = AugmentConfig(crop_padding=0, flip=False, autoaugment="cifar10")
    x, _ = epoch(loader(data, shuffle=False, image_size=48), 0)
    assert x.shape == (160, 3, 48, 48)
    a, _ = epoch(loader(data, shuffle=False, augment=aug), 2)
    b, _ = epoch(loader(data, shuffle=False, augment=aug), 2)
    plain, _ = epoch(loader(data, shuffle=False))
    assert torch.equal(a, b) and not torch.equal(a, plain)


# --- real CIFAR-10 -----------------------------------------------------------------------------


@pytest.mark.cifar
@pytest.mark.slow
def test_real_cifar10_loads_and_is_cached(cifar10_root):
    source = DATASETS.get("cifar10")
    first = source(cifar10_root, None)
    assert first.train_images.shape == (50_000, 3, 32, 32) and first.test_images.shape == (10_000, 3, 32, 32)
    assert first.classes == [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    assert first.train_labels.bincount().tolist() == [5000] * 10
    start = time.perf_counter()
    second = cifar10(cifar10_root, None)
    assert time.perf_counter() - start < 2.0
    assert torch.equal(second.test_images, first.test_images)
