"""Checkpoints that continue a variant exactly, and the variant's exported weights.

A checkpoint holds the model, optimizer, schedule, every trick's state, counters, history, the
throughput meter, evaluation rates, peak memory so far and every RNG state, so a run killed at
any point after it ends with the same weights *and* the same final metrics as one never killed.
"""

from __future__ import annotations

import time
from typing import Any

from bench.engine import checkpoint as ckpt
from bench.errors import CheckpointError
from bench.faults import fault_point


def save_checkpoint(state: Any, wall_start: float, memory: Any, name: str = ckpt.LAST) -> None:
    if state.run_dir is None:
        return
    payload = {
        "format": ckpt.FORMAT,
        "run_key": state.variant.run_key,
        "epoch": state.epoch,
        "step": state.step,
        "best_val": state.best_val,
        "history": state.history,
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.schedule.state_dict(),
        "tricks": {t.name: t.state_dict() for t in state.tricks},
        "meter": state.meter.state_dict(),
        "eval_rates": state.eval_rates,
        "peak_mb": max(memory.peak_mb(), state.peak_mb_before),
        "wall_s": state.wall_before + (time.perf_counter() - wall_start),
        "rng": ckpt.rng_state(),
    }
    ckpt.atomic_save(payload, state.run_dir / name)
    if name == ckpt.LAST:  # tests stop a real process here (bench/faults.py): after epoch N's checkpoint
        fault_point(f"run.checkpoint.{state.epoch}", state.variant.variant_id)


def checkpoint_epoch(state: Any, record: dict[str, float], wall_start: float, memory: Any) -> None:
    """After an epoch: ``last.ckpt`` every ``checkpoint.every`` epochs and at the end; ``best.ckpt``
    when validation accuracy improves (never chosen on test: the schema requires a val split)."""
    every = state.cfg.train.checkpoint
    if not every.every:
        return
    if state.epoch % every.every == 0 or state.epoch == state.cfg.train.epochs:
        save_checkpoint(state, wall_start, memory)
    score = record.get("val/acc")
    if every.keep_best and score is not None and score > state.best_val:
        state.best_val = score
        save_checkpoint(state, wall_start, memory, ckpt.BEST)


def restore(state: Any, hooks: Any) -> bool:
    """Restore the last checkpoint of this run directory (if any), then start the hooks without
    letting them shift the restored RNG streams.

    A truncated, corrupt, code-carrying or foreign checkpoint raises ``CheckpointError``: it is
    never loaded, and never silently replaced by a fresh start.
    """
    resumed = _load(state)
    rng_at_resume = ckpt.rng_state() if resumed else None
    for hook in hooks:
        hook.on_start(state)
    if rng_at_resume is not None:  # hooks (MLflow, ...) must not shift the restored RNG streams
        ckpt.set_rng_state(rng_at_resume)
    return resumed


def _load(state: Any) -> bool:
    if state.run_dir is None:
        return False
    ckpt.remove_stale_temp_files(state.run_dir)  # left by a process killed mid-write
    path = state.run_dir / ckpt.LAST
    if not path.exists():
        return False
    saved = ckpt.safe_load(path)
    ckpt.check_payload(saved, path, state.variant.run_key, tricks=[t.name for t in state.tricks])
    try:
        state.model.load_state_dict(saved["model"])
        state.optimizer.load_state_dict(saved["optimizer"])
        state.schedule.load_state_dict(saved["scheduler"])
        for trick in state.tricks:
            trick.load_state_dict(saved["tricks"][trick.name])
        state.meter.load_state_dict(saved["meter"])
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
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
    ckpt.set_rng_state(saved["rng"])
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
        ckpt.atomic_save(state.model.state_dict(), state.run_dir / "model_raw.pt")
    ckpt.atomic_save(export.state_dict(), path)
    mean, std = state.input_stats
    write_weights_meta(path, mean, std, state.normalize)
    return str(path)
