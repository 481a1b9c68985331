"""``train.compile``: run forward passes through ``torch.compile``. The model itself (its
state dict, checkpoints, averaging) stays the plain module; only ``state.forward`` is compiled.

Compilation happens in the first step, which the throughput meter's warm-up already excludes;
its time (the first step's, synchronised) is recorded as ``time/compile_s``. A compile failure
fails the variant with that reason: it never falls back to eager silently.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from bench.errors import BenchError, message_line
from bench.tricks import TRICKS
from bench.tricks.base import Trick


class CompileFailed(BenchError):
    """``torch.compile`` could not compile the model: the variant fails, it never runs eager instead."""


class _Compiled:
    """The compiled forward; turns a compiler error into ``CompileFailed`` with the cause."""

    def __init__(self, module: torch.nn.Module, mode: str | None):
        self.fn = torch.compile(module, mode=mode)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        try:
            return self.fn(x)
        except torch._dynamo.exc.TorchDynamoException as exc:
            raise CompileFailed(f"torch.compile failed ({type(exc).__name__}: {message_line(exc)})") from exc


@TRICKS.register("compile")
class Compile(Trick):
    name = "compile"

    def __init__(self, mode: str | None):
        self.mode = mode
        self.compile_s: float | None = None
        self._t0: float | None = None

    @classmethod
    def from_config(cls, train_cfg: Any) -> Compile | None:
        value = train_cfg.compile
        if value is False:
            return None
        return cls(None if value is True or value == "default" else value)

    def on_setup(self, state: Any) -> None:
        state.forward = _Compiled(state.model, self.mode)

    def on_epoch_start(self, state: Any) -> None:
        if self.compile_s is None and self._t0 is None:
            self._t0 = time.perf_counter()

    def after_step(self, state: Any, stepped: bool) -> bool:
        if self.compile_s is None and self._t0 is not None:
            state.synchronize()
            self.compile_s = time.perf_counter() - self._t0
        return True

    def finish(self, state: Any, metrics: dict[str, float]) -> None:
        if self.compile_s is not None:
            metrics["time/compile_s"] = self.compile_s

    def state_dict(self) -> dict[str, Any]:
        return {"compile_s": self.compile_s if self.compile_s is not None else -1.0}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("compile_s", -1.0) >= 0:
            self.compile_s = float(state["compile_s"])
