"""Checkpoints that resume a variant exactly, and the variant's exported weights.

A checkpoint holds the model, optimizer, schedule, the GradScaler, every trick's state, counters,
history, the throughput meter, evaluation rates, peak memory so far and every RNG state, so a run
killed at any point after it ends with the same weights *and* the same final metrics as one never
killed. Written atomically (temp file, fsync, ``os.replace``) so a kill mid-write never leaves a
corrupt file; read with ``weights_only=True`` so a file carrying pickled code is refused."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.errors import CheckpointError, described, message_line
from bench.util.fileio import atomic_save  # noqa: F401 - re-exported for the loop

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
            why = f"it is truncated or corrupt ({described(exc, 160)})"
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


def save_checkpoint(state: Any, wall_start: float, memory: Any, name: str = LAST) -> None:
    if state.run_dir is None:
        return
    payload = {
        "format": FORMAT,
        "run_key": state.variant.run_key,
        "epoch": state.epoch,
        "step": state.step,
        "best_val": state.best_val,
        "history": state.history,
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.schedule.state_dict(),
        "precision": state.precision.state_dict(),  # the GradScaler's scale and growth tracker
        "tricks": {t.name: t.state_dict() for t in state.tricks},
        "meter": state.meter.state_dict(),
        "eval_rates": state.eval_rates,
        "peak_mb": max(memory.peak_mb(), state.peak_mb_before),
        "wall_s": state.wall_before + (time.perf_counter() - wall_start),
        "rng": rng_state(),
    }
    atomic_save(payload, state.run_dir / name)


def load_into(state: Any) -> bool:
    """Restore the last checkpoint of ``state.run_dir`` into ``state``; False when there is none.
    A truncated, corrupt, code-carrying or foreign checkpoint raises ``CheckpointError``: it is
    never loaded, and never silently replaced by a fresh start."""
    if state.run_dir is None:
        return False
    remove_stale_temp_files(state.run_dir)  # left by a process killed mid-write
    path = state.run_dir / LAST
    if not path.exists():
        return False
    saved = safe_load(path)
    check_payload(saved, path, state.variant.run_key, tricks=[t.name for t in state.tricks])
    try:
        state.model.load_state_dict(saved["model"])
        state.optimizer.load_state_dict(saved["optimizer"])
        state.schedule.load_state_dict(saved["scheduler"])
        # checkpoints written while precision was a trick keep the scaler under "tricks"
        state.precision.load_state_dict(saved.get("precision", saved["tricks"].get("precision", {})))
        for trick in state.tricks:
            trick.load_state_dict(saved["tricks"][trick.name])
        state.meter.load_state_dict(saved["meter"])
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        first = message_line(exc, 200)
        raise CheckpointError(
            f"cannot resume from {path}: it does not fit this variant ({first}). Delete it or run with --force."
        ) from None
    state.epoch, state.step, state.best_val = (
        int(saved["epoch"]),
        int(saved["step"]),
        float(saved["best_val"]),
    )
    state.history = [dict(r) for r in saved["history"]]
    state.eval_rates.update({k: list(v) for k, v in saved["eval_rates"].items()})
    state.peak_mb_before, state.wall_before = float(saved["peak_mb"]), float(saved["wall_s"])
    state.resumed_from_epoch = state.epoch
    set_rng_state(saved["rng"])
    return True


def save_weights(state: Any) -> str | None:
    """The variant's weights (the averaged model for SWA, with the raw ones beside it as
    ``model_raw.pt``) and the input statistics they expect (``model.pt.json``)."""
    if state.run_dir is None:
        return None
    from bench.components.models.weights import write_weights_meta

    path = state.run_dir / "model.pt"
    export = state.export_model if state.export_model is not None else state.model
    if export is not state.model:
        atomic_save(state.model.state_dict(), state.run_dir / "model_raw.pt")
    atomic_save(export.state_dict(), path)
    mean, std = state.input_stats
    write_weights_meta(path, mean, std, state.normalize)
    return str(path)
