"""The loop's few named hook points. Recording (MLflow), pruning (Optuna) and progress plug in
here instead of forking the loop:

    on_start(state)                    model, optimizer and data built; resumed if a checkpoint exists
    on_epoch_end(state, epoch, record) after training + evaluation of one epoch; may raise to stop
    on_end(state, result)              after the final evaluation (not called on errors)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class VariantResult:
    status: str  # finished | skipped | failed | pruned | interrupted
    reason: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    weights_path: str | None = None
    delivered: str = "weights"  # the model scored as ``*/acc`` and exported (a trick's name, e.g. swa)


class Hook(Protocol):
    def on_start(self, state: Any) -> None: ...

    def on_epoch_end(self, state: Any, epoch: int, record: dict[str, float]) -> None: ...

    def on_end(self, state: Any, result: VariantResult) -> None: ...


class BaseHook:
    """No-op defaults so a hook implements only what it needs."""

    def on_start(self, state: Any) -> None:
        pass

    def on_epoch_end(self, state: Any, epoch: int, record: dict[str, float]) -> None:
        pass

    def on_end(self, state: Any, result: VariantResult) -> None:
        pass
