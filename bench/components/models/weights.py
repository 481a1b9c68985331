"""Local weight files: loading a state dict into a freshly built model (head excluded), and the
``PATH.json`` sidecar that says which input normalisation those weights were trained with, so
a model fine-tuned from them sees inputs the way its frozen stages expect."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.errors import CheckpointError
from bench.util.fileio import atomic_write_text, expand_path

META_SUFFIX = ".json"


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.stat().st_size == 0:  # torch's own message for it is a bare IndexError
        raise CheckpointError(f"cannot load weights from {path}: the file is empty (0 bytes)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        text = str(exc)
        why = (
            "it holds pickled code or objects (refused for safety)"
            if "weights_only" in text.lower()
            else (text.splitlines() or [type(exc).__name__])[0][:200]
        )
        raise CheckpointError(f"cannot load weights from {path}: {why}") from None
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]  # a bench checkpoint
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} is not a state dict (name -> tensor)")
    return obj


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a local state dict into ``model``; the head is kept as built (sized for this data).

    Loaded with ``weights_only=True``: a file carrying pickled code is refused. Every non-head
    tensor must match by name and shape, else the file is for another architecture.
    """
    from bench.components.models.stages import head_matcher

    path = expand_path(path)
    if not path.is_file():
        raise CheckpointError(
            f"model.weights: file not found: {path} (a bench run writes one per variant as "
            "results/<recipe>/weights/<variant>.pt; run the recipe that produces it first)"
        )
    state = read_state_dict(path)
    own = model.state_dict()
    is_head = head_matcher(model)
    wanted = {k for k in own if not is_head(k)}
    given = {k for k in state if not is_head(k)}
    missing, unexpected = sorted(wanted - given), sorted(given - wanted)
    mismatched = sorted(k for k in wanted & given if tuple(state[k].shape) != tuple(own[k].shape))
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if mismatched:
            k = mismatched[0]
            parts.append(
                f"{len(mismatched)} of another shape (e.g. {k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)})"
            )
        raise CheckpointError(f"model.weights: {path} is for another architecture: " + "; ".join(parts))
    model.load_state_dict({k: state[k] for k in wanted}, strict=False)


def weights_meta_path(weights: str | Path) -> Path:
    """``model.pt`` -> ``model.pt.json``: the sidecar travels with the file it describes."""
    path = expand_path(weights)
    return path.with_name(path.name + META_SUFFIX)


def _channels(values: Any, key: str, where: Path) -> tuple[float, ...]:
    ok = (
        isinstance(values, (list, tuple))
        and len(values) in (1, 3)
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)
    )
    if not ok or (key == "std" and any(v <= 0 for v in values)):
        rule = "positive numbers" if key == "std" else "numbers"
        raise CheckpointError(f"{where}: '{key}' must be a list of 1 or 3 {rule}, got {values!r}")
    return tuple(float(v) for v in values)


def write_weights_meta(
    weights: str | Path, mean: Sequence[float], std: Sequence[float], normalize: str, **extra: Any
) -> Path:
    """Write ``weights``' sidecar: the mean/std its inputs were normalised with, and which rule
    chose them (``train``, ``pretrained``, ``explicit``). Written atomically beside the file."""
    path = weights_meta_path(weights)
    body = {"mean": [float(v) for v in mean], "std": [float(v) for v in std], "normalize": normalize, **extra}
    _channels(body["mean"], "mean", path), _channels(body["std"], "std", path)
    atomic_write_text(path, json.dumps(body, indent=2) + "\n")
    return path


def read_weights_meta(weights: str | Path) -> dict[str, Any] | None:
    """The sidecar of ``weights`` with ``mean``/``std`` as float tuples, or None when there is
    none (weights saved by something other than bench). A malformed sidecar is an error: using
    the wrong statistics silently is what the sidecar exists to prevent."""
    path = weights_meta_path(weights)
    if not path.is_file():
        return None
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from None
    if not isinstance(body, dict) or "mean" not in body or "std" not in body:
        raise CheckpointError(f"{path}: expected a JSON object with 'mean' and 'std' lists")
    return {**body, "mean": _channels(body["mean"], "mean", path), "std": _channels(body["std"], "std", path)}
