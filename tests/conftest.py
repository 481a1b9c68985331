"""Shared fixtures: a tiny learnable image folder, the real CIFAR-10 (when its archive is here),
and a per-session cache dir so tests never write into the user's ~/.cache."""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
TINY_CLASSES = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 200), "gray": (128, 128, 128)}


def _write_split(folder: Path, per_class: int, rng: np.random.Generator) -> None:
    from PIL import Image

    for name, colour in TINY_CLASSES.items():
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            noise = rng.normal(0, 25, size=(32, 32, 3))
            pixels = np.clip(np.asarray(colour, dtype=np.float64) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{i:04d}.jpg", quality=90)


@pytest.fixture(scope="session")
def tiny_image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``train/`` (40 per class) and ``test/`` (12 per class) of 32×32 JPEGs in 4 classes,
    each a dominant colour plus noise, so a small CNN learns it in a few steps."""
    root = tmp_path_factory.mktemp("tiny_image_folder")
    rng = np.random.default_rng(0)
    _write_split(root / "train", 40, rng)
    _write_split(root / "test", 12, rng)
    return root


@pytest.fixture(scope="session")
def timing_image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like ``tiny_image_folder`` with 5x the training images: runs long enough (~1-2 s of
    training steps) for a throughput measurement to mean something."""
    root = tmp_path_factory.mktemp("timing_image_folder")
    rng = np.random.default_rng(1)
    _write_split(root / "train", 200, rng)
    _write_split(root / "test", 12, rng)
    return root


@pytest.fixture(scope="session")
def gpu_image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4,096 training images: enough steps per epoch for a GPU's throughput to be timed past its
    warm-up at batch 256 (the GPU tests only)."""
    root = tmp_path_factory.mktemp("gpu_image_folder")
    rng = np.random.default_rng(2)
    _write_split(root / "train", 1024, rng)
    _write_split(root / "test", 64, rng)
    return root


def _cache_base() -> Path:
    env = os.environ.get("BENCH_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "bench"


@pytest.fixture(scope="session")
def cifar10_root() -> Path:
    """The real CIFAR-10 as an ImageFolder (``train/`` + ``test/``), extracted once from
    ``$BENCH_CIFAR10_ARCHIVE`` or ``<repo>/../shared/data/cifar10-jpeg.tar.gz`` into the cache
    dir (``cifar10/`` there, as bench's own cifar10 source does); skipped when absent."""
    target = _cache_base() / "cifar10"
    if (target / "train").is_dir() and (target / "test").is_dir():
        return target
    archive = Path(
        os.environ.get("BENCH_CIFAR10_ARCHIVE") or REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
    )
    if not archive.is_file():
        pytest.skip("real CIFAR-10 not available")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".extract-"))
    try:  # extract beside the target, then rename: a killed extraction leaves no half tree
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        if not (target / "train").is_dir():
            os.replace(tmp / "cifar10", target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


@pytest.fixture(scope="session")
def _session_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench_cache")


@pytest.fixture(autouse=True)
def _isolated_cache(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests not marked ``cifar`` cache into a per-session tmp dir, never ~/.cache."""
    if request.node.get_closest_marker("cifar") is None:
        monkeypatch.setenv("BENCH_CACHE_DIR", str(request.getfixturevalue("_session_cache_dir")))


@pytest.fixture(autouse=True)
def _reap_started_processes() -> Iterator[None]:
    """Whatever a test asserted, the processes it started with ``tests.procs.popen`` die with it."""
    yield
    from tests.procs import reap

    reap()


class CaptureHook:
    """A loop hook that keeps what a test asserts on: the weights the run started from (after any
    resume), and the final state and result."""

    def __init__(self, probe=None):
        self.probe = probe  # called with the state at the start, e.g. to wrap a trick's method

    def on_start(self, state):
        self.initial = {k: v.detach().clone() for k, v in state.model.state_dict().items()}
        if self.probe:
            self.probe(state)

    def on_epoch_end(self, state, epoch, record):
        pass

    def on_end(self, state, result):
        self.state, self.result = state, result


@pytest.fixture
def capture_hook() -> type[CaptureHook]:
    """The ``CaptureHook`` class: ``hook = capture_hook()`` per run."""
    return CaptureHook
