"""Checkpoints that resume a variant exactly: model, optimizer, scheduler, scaler, SWA state,
counters, history and every RNG state. Written atomically (temp file, fsync, ``os.replace``)
so a kill mid-write never leaves a corrupt file; read with ``weights_only=True`` so a file
carrying pickled code is refused."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.errors import CheckpointError
from bench.fileio import atomic_save  # noqa: F401 - re-exported for the loop

LAST = "last.ckpt"
BEST = "best.ckpt"
FORMAT = 2
REQUIRED = (
    "epoch",
    "step",
    "best_val",
    "history",
    "model",
    "optimizer",
    "scheduler",
    "tricks",
    "meter",
    "rng",
)


def remove_stale_temp_files(folder: Path) -> None:
    """Delete ``*.tmp`` files a process killed in the middle of ``atomic_save`` left behind."""
    if folder.is_dir():
        for tmp in folder.glob("*.tmp"):
            tmp.unlink(missing_ok=True)


def safe_load(path: Path) -> dict[str, Any]:
    """Load a checkpoint; truncated, corrupt or code-carrying files raise CheckpointError."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        text = str(exc)
        if "weights_only" in text or "Unsupported global" in text:
            why = "it carries pickled Python objects or code, which bench refuses to load (weights_only=True)"
        else:
            first = text.strip().splitlines()[0][:160] if text.strip() else ""
            why = f"it is truncated or corrupt ({type(exc).__name__}: {first})"
        raise CheckpointError(
            f"cannot load checkpoint {path}: {why}. Delete it or run with --force."
        ) from None
    if not isinstance(obj, dict) or "epoch" not in obj:
        raise CheckpointError(f"{path} is not a bench checkpoint. Delete it or run with --force.")
    return obj


def check_payload(saved: dict[str, Any], path: Path, run_key: str, *, tricks: list[str]) -> None:
    """A checkpoint must be complete and written by this very variant (same ``run_key``)."""
    if saved.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} was written by another bench version (checkpoint format {saved.get('format')}, "
            f"this one reads {FORMAT}). Delete it or run with --force."
        )
    missing = [k for k in REQUIRED if k not in saved]
    if missing:
        raise CheckpointError(
            f"{path} is an incomplete checkpoint (missing {', '.join(missing)}). Delete it or run with --force."
        )
    if saved.get("run_key") != run_key:
        raise CheckpointError(
            f"{path} was written by another configuration (run_key {saved.get('run_key')}, this variant is "
            f"{run_key}); refusing to resume from it. Delete it or run with --force."
        )
    absent = [t for t in tricks if t not in saved["tricks"]]
    if absent:
        raise CheckpointError(
            f"{path} has no state for {', '.join(absent)}, which this variant uses. Delete it or run with --force."
        )


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
