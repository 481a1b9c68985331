"""The stepping rule, shared by the loop and ``bench plan`` so the plan is what runs:

schedule.begin_step()            warm-up factor on the LRs, for this step only
optimizer step                   (the loop: real gradients; the plan: none)
tricks.after_step(stepped)       EMA update; SWA holds the per-batch schedule
schedule.end_step(...)           restore LRs; per-batch scheduler steps only after a real step
...
tricks.on_epoch_end(record)      SWA averages and steps SWALR, holding the per-epoch schedule
schedule.after_epoch(val/acc)    per-epoch and plateau schedulers (plateau on validation only)
"""

from __future__ import annotations

from typing import Any


def after_optimizer_step(state: Any, stepped: bool, batch_index: int) -> None:
    results = [trick.after_step(state, stepped) for trick in state.tricks]  # every trick, always
    state.schedule.end_step(stepped, state.epoch, batch_index, hold=not all(results))
    state.step += 1


def end_of_epoch(state: Any, record: dict[str, float]) -> None:
    results = [trick.on_epoch_end(state, record) for trick in state.tricks]
    if all(results):
        state.schedule.after_epoch(record.get("val/acc"))
