"""Precision is loop state, not a trick: fp32, tf32, AMP fp16 with a GradScaler (CUDA only) and
AMP bf16. The loop runs every forward under ``autocast()`` and steps through ``step()``.

A variant named fp32 runs fp32: TF32 is switched off explicitly (PyTorch leaves cuDNN's on by
default), so the precision axis never compares AMP against TF32 labelled fp32. A mode the device
cannot run is never silently replaced by another: the variant is recorded as skipped with why.

The step has no host-device sync of its own: whether the scaler skipped the optimizer step
(inf/NaN gradients) is read from an optimizer step hook that records that ``step`` ran, not from
``GradScaler.get_scale()``, which would wait for the device twice per step.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

DTYPES = {"amp_fp16": torch.float16, "amp_bf16": torch.bfloat16}


def unavailable_reason(precision: str, device: torch.device) -> str | None:
    """Why ``precision`` cannot run on ``device`` (torch's facts through the one rule,
    ``bench.measure.hardware.precision_gap``), or None."""
    from bench.measure.hardware import native_bf16_cpu, precision_gap

    if device.type == "cuda":
        return precision_gap(
            precision,
            "cuda",
            capability=torch.cuda.get_device_capability(device),
            gpu_bf16=torch.cuda.is_bf16_supported(),
        )
    return precision_gap(precision, device.type, cpu_bf16_native=native_bf16_cpu())


def set_backend_flags(precision: str, cudnn_benchmark: bool) -> dict[str, str]:
    """Set TF32 and cuDNN flags for this variant explicitly; return them for the record."""
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    torch.backends.cudnn.benchmark = cudnn_benchmark
    return {
        "backend.cuda_matmul_allow_tf32": str(tf32),
        "backend.cudnn_allow_tf32": str(tf32),
        "backend.float32_matmul_precision": torch.get_float32_matmul_precision(),
        "backend.cudnn_benchmark": str(cudnn_benchmark),
    }


class Precision:
    """Autocast context and the optimizer step, with loss scaling where fp16 needs it. Built
    before the model (it sets the backend flags); ``attach`` hooks the optimizer once it exists."""

    def __init__(self, precision: str, device: torch.device, cudnn_benchmark: bool = True):
        self.precision = precision
        self.dtype = DTYPES.get(precision)
        self.device = device  # availability was checked (unavailable_reason) before anything was built
        self.flags = set_backend_flags(precision, cudnn_benchmark)
        self.scaler = torch.amp.GradScaler(device.type) if precision == "amp_fp16" else None
        self._stepped = False

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        optimizer.register_step_post_hook(self._mark_stepped)

    def _mark_stepped(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._stepped = True

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
        """Step the optimizer; False when the scaler skipped the step (inf/NaN gradients), so the
        scheduler does not run ahead of the optimizer."""
        self._stepped = False
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)
            self.scaler.update()
        return self._stepped

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler and state:
            self.scaler.load_state_dict(state)

    def params(self) -> dict[str, str]:
        """The backend flags this variant ran with (recorded as run tags)."""
        return dict(self.flags)
