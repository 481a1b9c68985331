"""Precision modes: fp32, AMP fp16 with a GradScaler (CUDA only), and bf16 autocast.

``amp_fp16`` on a machine without CUDA is never silently run in another precision: the caller
gets a reason and records the variant as skipped.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

DTYPES = {"amp_fp16": torch.float16, "amp_bf16": torch.bfloat16}


def unavailable_reason(precision: str, device: torch.device) -> str | None:
    if precision == "amp_fp16" and device.type != "cuda":
        return f"amp_fp16 needs a CUDA device (GradScaler + fp16 autocast); this run is on {device.type}"
    if precision == "amp_bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return "amp_bf16 is not supported by this GPU"
    return None


class Precision:
    """Autocast context and the optimizer step, with loss scaling where fp16 needs it."""

    def __init__(self, precision: str, device: torch.device):
        self.precision = precision
        self.device = device
        self.dtype = DTYPES.get(precision)
        self.scaler = torch.amp.GradScaler(device.type) if precision == "amp_fp16" else None

    def autocast(self) -> Any:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Bring gradients to their true scale (before clipping)."""
        if self.scaler:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> bool:
        """Step the optimizer; False when the scaler skipped the step (inf/NaN gradients).

        The scheduler must not step on a skipped step, else the LR schedule runs ahead.
        """
        if self.scaler is None:
            optimizer.step()
            return True
        scale = self.scaler.get_scale()
        self.scaler.step(optimizer)
        self.scaler.update()
        return self.scaler.get_scale() >= scale

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler and state:
            self.scaler.load_state_dict(state)
