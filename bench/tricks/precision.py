"""Precision: fp32, tf32, AMP fp16 with a GradScaler (CUDA only) and AMP bf16.

A variant named fp32 runs fp32: TF32 is switched off explicitly (PyTorch leaves cuDNN's on by
default), so the precision axis never compares AMP against TF32 labelled fp32. A mode the device
cannot run is never silently replaced by another: the variant is recorded as skipped with why.

The step has no host-device sync of its own: whether the scaler skipped the optimizer step
(inf/NaN gradients) is read from an optimizer step hook that records that ``step`` ran, not from
``GradScaler.get_scale()``, which would wait for the device twice per step.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import torch

from bench.tricks import TRICKS
from bench.tricks.base import Trick

DTYPES = {"amp_fp16": torch.float16, "amp_bf16": torch.bfloat16}


def native_bf16_cpu() -> bool:
    """True when this CPU runs bf16 natively (avx512_bf16 / AMX); else autocast emulates it,
    20-40x slower. ``BENCH_FORCE_EMULATED_BF16=1``/``=0`` pretends it is emulated/native (tests)."""
    from bench.hardware import cpu_has_native_bf16

    if not cpu_has_native_bf16():
        return False
    if os.environ.get("BENCH_FORCE_EMULATED_BF16") == "0":
        return True  # forced: not torch's own answer either
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return True


def unavailable_reason(precision: str, device: torch.device) -> str | None:
    if precision == "amp_fp16" and device.type != "cuda":
        return f"amp_fp16 needs a CUDA device (GradScaler + fp16 autocast); this run is on {device.type}"
    if precision == "tf32":
        if device.type != "cuda":
            return f"tf32 is a CUDA (Ampere or newer) matmul mode; this run is on {device.type}"
        if torch.cuda.get_device_capability(device)[0] < 8:
            return "tf32 needs an Ampere or newer GPU (compute capability >= 8.0)"
    if precision == "amp_bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return "amp_bf16 is not supported by this GPU"
    if precision == "amp_bf16" and device.type == "cpu":
        from bench.hardware import emulated_bf16_reason

        return emulated_bf16_reason(native_bf16_cpu())
    return None


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


@TRICKS.register("precision")
class Precision(Trick):
    """Autocast context and the optimizer step, with loss scaling where fp16 needs it."""

    name = "precision"

    def __init__(self, precision: str, cudnn_benchmark: bool = True):
        self.precision = precision
        self.cudnn_benchmark = cudnn_benchmark
        self.dtype = DTYPES.get(precision)
        self.device = torch.device("cpu")
        self.scaler: torch.amp.GradScaler | None = None
        self.flags: dict[str, str] = {}
        self._stepped = False

    @classmethod
    def from_config(cls, train_cfg: Any) -> Precision:
        return cls(train_cfg.precision, train_cfg.cudnn_benchmark)

    def on_model(self, state: Any) -> None:
        self.device = state.device  # availability was checked before anything was built
        self.flags = set_backend_flags(self.precision, self.cudnn_benchmark)
        if self.precision == "amp_fp16":
            self.scaler = torch.amp.GradScaler(self.device.type)

    def on_setup(self, state: Any) -> None:
        state.optimizer.register_step_post_hook(self._mark_stepped)

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
        return dict(self.flags)
