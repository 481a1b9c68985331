"""Data set sources: find a data set on disk, decode every image once into one uint8 tensor,
and cache that tensor so later runs start in well under a second instead of re-decoding.

A source is ``(root: Path, cfg: DataConfig) -> RawData``; ``data.name`` may also name a user's
own source as ``package.module:function``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tarfile
import tempfile
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.errors import DataError
from bench.util.dataroot import CIFAR10_ARCHIVE
from bench.util.fileio import atomic_save

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
CACHE_VERSION = 1
_CHUNK = 1000


@dataclass
class RawData:
    """A whole data set in memory: images uint8 N×3×H×W, labels int64 N, class names."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: list[str]


def cache_dir() -> Path:
    """Where decoded tensors and extracted archives live: ``$BENCH_CACHE_DIR`` or ~/.cache/bench."""
    env = os.environ.get("BENCH_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "bench"


# --- listing and fingerprint -------------------------------------------------------------------


def list_split(split_dir: Path) -> tuple[list[str], list[tuple[str, str]], tuple[int, int, int]]:
    """Class names, (class, file path) pairs sorted as ImageFolder does, and a cheap fingerprint
    (file count, total bytes, newest mtime) that changes when files are added, removed or edited."""
    classes = sorted(e.name for e in os.scandir(split_dir) if e.is_dir())
    items: list[tuple[str, str]] = []
    count = size = newest = 0
    for name in classes:
        entries = sorted((e for e in os.scandir(split_dir / name) if e.is_file()), key=lambda e: e.name)
        for entry in entries:
            if entry.name.lower().endswith(IMAGE_EXTENSIONS):
                st = entry.stat()
                count, size, newest = count + 1, size + st.st_size, max(newest, st.st_mtime_ns)
                items.append((name, entry.path))
    return classes, items, (count, size, newest)


# --- decoding ----------------------------------------------------------------------------------


def _decode_chunk(paths: list[str]) -> list[torch.Tensor]:
    from torchvision.io import ImageReadMode, decode_image, decode_jpeg

    datas = []
    for path in paths:
        try:
            with open(path, "rb") as fh:
                datas.append(torch.frombuffer(bytearray(fh.read()), dtype=torch.uint8))
        except OSError as exc:
            raise DataError(f"cannot read image file {path}: {exc}") from None
    if all(len(d) > 2 and d[0] == 0xFF and d[1] == 0xD8 for d in datas):
        try:  # batched JPEG decoding is ~2x faster than one call per image
            return list(decode_jpeg(datas, mode=ImageReadMode.RGB))
        except RuntimeError:
            pass  # find the bad file below, so the error can name it
    out = []
    for path, data in zip(paths, datas):
        try:
            out.append(decode_image(data, mode=ImageReadMode.RGB))
        except RuntimeError as exc:
            raise DataError(f"cannot decode image file {path} (unreadable or truncated): {exc}") from None
    return out


def decode_images(paths: list[str]) -> torch.Tensor:
    """Decode image files (grayscale and alpha become RGB) into one uint8 N×3×H×W tensor.

    All images must end up one size to share a tensor: images whose size differs from the most
    common size are resized to it (bilinear, antialiased). An unreadable or truncated file raises
    ``DataError`` naming it; nothing is skipped silently.
    """
    if not paths:
        return torch.empty(0, 3, 0, 0, dtype=torch.uint8)
    chunks = [paths[i : i + _CHUNK] for i in range(0, len(paths), _CHUNK)]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*image decoding and encoding capabilities")
        with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
            images = [img for chunk in pool.map(_decode_chunk, chunks) for img in chunk]
    sizes = Counter(tuple(img.shape[1:]) for img in images)
    if len(sizes) > 1:
        from torchvision.transforms.v2.functional import resize

        target = list(sizes.most_common(1)[0][0])
        images = [
            img if list(img.shape[1:]) == target else resize(img, target, antialias=True) for img in images
        ]
    return torch.stack(images)


# --- image folders with a decoded-tensor cache -------------------------------------------------


def _cache_file(root: Path, fingerprint: Any) -> Path:
    key = hashlib.sha1(f"{CACHE_VERSION}|{root.resolve()}|{fingerprint}".encode()).hexdigest()[:20]
    return cache_dir() / "decoded" / f"{root.resolve().name or 'root'}-{key}.pt"


def load_image_folder(root: Path, train_dir: Path, test_dir: Path) -> RawData:
    """Load ``train_dir/<class>/*`` and ``test_dir/<class>/*``, decoding only on a cache miss.

    The cache is keyed by the absolute path and a listing fingerprint, so edits to the folder
    invalidate it; it is written atomically, so a killed run never leaves a broken cache.
    """
    classes, train_items, train_fp = list_split(train_dir)
    test_classes, test_items, test_fp = list_split(test_dir)
    if not classes or not train_items:
        raise DataError(f"no class folders with images ({', '.join(IMAGE_EXTENSIONS)}) in {train_dir}")
    # An empty folder (a leftover, .ipynb_checkpoints) would silently become a class never seen.
    have = {c for c, _ in train_items}
    empty = [name for name in classes if name not in have]
    if empty:
        raise DataError(
            f"class folder {train_dir / empty[0]} holds no images ({', '.join(IMAGE_EXTENSIONS)}): it would "
            "become an extra class with no training data; remove it or add images"
            + (f" (also empty: {', '.join(empty[1:])})" if empty[1:] else "")
        )
    extra = sorted(set(test_classes) - set(classes))
    if extra:
        raise DataError(f"{test_dir} has classes that {train_dir} lacks: {', '.join(extra)}")
    cache = _cache_file(root, (str(train_dir), train_fp, str(test_dir), test_fp))
    if cache.is_file():
        try:
            blob = torch.load(cache, weights_only=True)
            return RawData(**{k: blob[k] for k in RawData.__dataclass_fields__})
        except Exception:  # a cache from another version or a damaged file: decode again
            pass
    index = {name: i for i, name in enumerate(classes)}
    data = RawData(
        train_images=decode_images([p for _, p in train_items]),
        train_labels=torch.tensor([index[c] for c, _ in train_items], dtype=torch.int64),
        test_images=decode_images([p for _, p in test_items]),
        test_labels=torch.tensor([index[c] for c, _ in test_items], dtype=torch.int64),
        classes=classes,
    )
    atomic_save(dict(vars(data)), cache)
    return data


def split_dirs(folder: Path, test_names: tuple[str, ...]) -> tuple[Path, Path] | None:
    if not (folder / "train").is_dir():
        return None
    for name in test_names:
        if (folder / name).is_dir():
            return folder / "train", folder / name
    return None


# --- sources -----------------------------------------------------------------------------------


def imagefolder(root: Path, cfg: Any = None) -> RawData:
    """Any folder with ``train/<class>/*`` and ``test/<class>/*`` (``val/`` may stand in for test)."""
    dirs = split_dirs(root, ("test", "val"))
    if dirs is None:
        raise DataError(
            f"no image folder at {root}: expected {root}/train/<class>/*.jpg|png and "
            f"{root}/test/<class>/* (or val/ instead of test/); set data.root or $BENCH_DATA_DIR"
        )
    return load_image_folder(root, *dirs)


def _extract_archive(archive: Path) -> Path:
    """Unpack the CIFAR-10 JPEG archive once into the cache dir (via a temp dir + rename)."""
    target = cache_dir() / "cifar10"
    if not (target / "train").is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".extract-"))
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")
            try:
                os.replace(tmp / "cifar10", target)
            except OSError:
                if not (target / "train").is_dir():  # not a concurrent extraction that won
                    raise
        except (OSError, tarfile.TarError) as exc:
            raise DataError(f"cannot extract {archive} into {target}: {exc}") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _download_cifar10(root: Path) -> None:
    """torchvision's CIFAR-10 download into ``root``, safe beside another process downloading into
    the same folder: each fetches and unpacks the archive in a folder of its own in ``root`` and
    renames the batches into place at once. (torchvision writes ``root/cifar-10-python.tar.gz``
    itself: two downloads truncated each other's file, and a failed one deleted the other's.)"""
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import check_integrity, download_url, extract_archive

    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".download-"))
    try:
        archive = root / CIFAR10.filename  # whole, from an earlier download by torchvision itself: used
        if not check_integrity(str(archive), CIFAR10.tgz_md5):
            archive = tmp / CIFAR10.filename
            download_url(CIFAR10.url, str(tmp), filename=CIFAR10.filename, md5=CIFAR10.tgz_md5)
        extract_archive(str(archive), str(tmp))
        try:
            os.replace(tmp / CIFAR10.base_folder, root / CIFAR10.base_folder)
        except OSError:
            if not (root / CIFAR10.base_folder).is_dir():  # else another download put its copy there first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _from_torchvision(root: Path) -> RawData:
    from torchvision.datasets import CIFAR10

    train = CIFAR10(str(root), train=True)
    test = CIFAR10(str(root), train=False)

    def images(ds: Any) -> torch.Tensor:
        return torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()

    return RawData(
        train_images=images(train),
        train_labels=torch.tensor(train.targets, dtype=torch.int64),
        test_images=images(test),
        test_labels=torch.tensor(test.targets, dtype=torch.int64),
        classes=list(train.classes),
    )


def cifar10(root: Path, cfg: Any = None) -> RawData:
    """CIFAR-10, looked for in ``root`` in this order: torchvision's ``cifar-10-batches-py/``,
    an ImageFolder ``train/`` + ``test/`` in root or ``root/cifar10/``, the archive
    ``cifar10-jpeg.tar.gz``; then a torchvision download (skipped when ``$BENCH_OFFLINE`` is set)."""
    if root.is_file():  # torchvision would try a download into it and fail with "File exists"
        raise DataError(
            f"{root} is a file, not a folder: point data.root (or $BENCH_DATA_DIR) at the folder holding "
            f"{CIFAR10_ARCHIVE}, cifar-10-batches-py/ or train/ + test/ (or at {CIFAR10_ARCHIVE} itself)"
        )
    if (root / "cifar-10-batches-py").is_dir():
        try:
            return _from_torchvision(root)
        except RuntimeError as exc:
            raise DataError(f"{root / 'cifar-10-batches-py'} is incomplete or corrupt: {exc}") from None
    for folder in (root, root / "cifar10"):
        dirs = split_dirs(folder, ("test",))
        if dirs is not None:
            return load_image_folder(folder, *dirs)
    if (root / CIFAR10_ARCHIVE).is_file():
        folder = _extract_archive(root / CIFAR10_ARCHIVE)
        return load_image_folder(folder, folder / "train", folder / "test")
    reason = "downloads are off ($BENCH_OFFLINE is set)"
    if not os.environ.get("BENCH_OFFLINE"):
        created = not root.exists()
        try:
            _download_cifar10(root)
            return _from_torchvision(root)
        except Exception as exc:  # offline, proxy, disk full: all end in the same advice
            reason = f"the download failed: {exc}"
            if created:  # leave no empty data folder behind, but another download's files stay
                with contextlib.suppress(OSError):
                    root.rmdir()
    raise DataError(
        f"CIFAR-10 not found in {root.resolve()}: looked for torchvision's pickled batches "
        f"({root}/cifar-10-batches-py/), an ImageFolder layout ({root}/train/<class>/*.jpg + "
        f"{root}/test/<class>/*, or the same under {root}/cifar10/) and the archive "
        f"{root}/{CIFAR10_ARCHIVE}; {reason}. Point data.root (or $BENCH_DATA_DIR) at a folder "
        f"holding one of these, e.g. data.root=/path/to/shared/data"
    )
