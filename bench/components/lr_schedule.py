"""``LRSchedule``: a torch scheduler plus the rule for when to step it, and a linear warm-up
applied per optimizer step on top of whatever the scheduler says.

Warm-up multiplies each group's LR by a factor rising linearly from ``warmup_start`` to 1 over
``warmup_steps`` real optimizer steps (fractions of an epoch allowed), for the step only: the
scheduler's own LRs are put back before it steps, so warm-up composes with every scheduler
(chainable ones read the current LR) and never changes the schedule after it.
"""

from __future__ import annotations

from typing import Any


class LRSchedule:
    def __init__(self, scheduler: Any, policy: str, steps_per_epoch: int, *, warmup_steps: int = 0,
                 warmup_start: float = 0.1):  # fmt: skip
        self.scheduler = scheduler
        self.policy = policy
        self.steps_per_epoch = steps_per_epoch
        self.warmup_steps = warmup_steps
        self.warmup_start = warmup_start
        self.steps_done = 0  # optimizer steps that really happened
        self._held: list[float] | None = None

    def warm_factor(self) -> float:
        if self.steps_done >= self.warmup_steps:
            return 1.0
        return self.warmup_start + (1.0 - self.warmup_start) * self.steps_done / self.warmup_steps

    def begin_step(self) -> None:
        """Before the optimizer step: apply the warm-up factor to every group's LR."""
        factor = self.warm_factor()
        if factor != 1.0:
            groups = self.scheduler.optimizer.param_groups
            self._held = [g["lr"] for g in groups]
            for g in groups:
                g["lr"] *= factor

    def end_step(self, stepped: bool, epoch: int, batch_index: int, hold: bool) -> None:
        """After the optimizer step: restore the scheduler's LRs, then step a per-batch scheduler
        if the optimizer really stepped and no trick holds the schedule (e.g. SWA)."""
        if self._held is not None:
            for g, lr in zip(self.scheduler.optimizer.param_groups, self._held):
                g["lr"] = lr
            self._held = None
        if not stepped:
            return
        self.steps_done += 1
        if hold:
            return
        if self.policy == "batch":
            self.scheduler.step()
        elif self.policy == "batch_fractional":
            self.scheduler.step(epoch + (batch_index + 1) / self.steps_per_epoch)

    def after_epoch(self, metric: float | None) -> None:
        if self.policy == "epoch":
            self.scheduler.step()
        elif self.policy == "plateau":
            if metric is None:  # the schema requires a validation split: this is a bug, not a default
                raise RuntimeError("the plateau scheduler got no validation metric to step on")
            self.scheduler.step(metric)

    def state_dict(self) -> dict[str, Any]:
        return {"scheduler": self.scheduler.state_dict(), "steps_done": self.steps_done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state["scheduler"])
        self.steps_done = int(state["steps_done"])
