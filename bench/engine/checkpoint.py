"""Checkpoints that resume a variant exactly: model, optimizer, scheduler, scaler, SWA state,
counters, history and every RNG state. Written atomically (temp file, fsync, ``os.replace``)
so a kill mid-write never leaves a corrupt file; read with ``weights_only=True`` so a file
carrying pickled code is refused."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.errors import CheckpointError

LAST = "last.ckpt"
BEST = "best.ckpt"


def atomic_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def safe_load(path: Path) -> dict[str, Any]:
    """Load a checkpoint; truncated, corrupt or code-carrying files raise CheckpointError."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        text = str(exc)
        if "weights_only" in text or "Unsupported global" in text:
            why = "it carries pickled Python objects or code, which bench refuses to load"
        else:
            why = f"it is truncated or corrupt ({type(exc).__name__}: {text.splitlines()[0][:160] if text else ''})"
        raise CheckpointError(
            f"cannot load checkpoint {path}: {why}. Delete it or run with --force."
        ) from None
    if not isinstance(obj, dict) or "epoch" not in obj:
        raise CheckpointError(f"{path} is not a bench checkpoint")
    return obj


def rng_state() -> dict[str, Any]:
    """All RNG states, as tensors and plain values (``weights_only``-loadable)."""
    version, internal, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "name": np_name,
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(
        (npy["name"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["gauss"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
