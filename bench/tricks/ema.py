"""Exponential moving average of the weights (``train.ema: {decay, every}``).

After every ``every``-th real optimizer step, ``ema = decay * ema + (1 - decay) * weights``
(buffers too, so BatchNorm statistics follow without a separate update). The EMA model is
evaluated beside the raw one as ``*/acc_ema`` and is what the variant delivers (scored as
``*/acc``, exported); its state is checkpointed, so a resumed run
continues the same average bit for bit.
"""

from __future__ import annotations

from typing import Any

from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from bench.tricks import TRICKS
from bench.tricks.averaging import evaluate_averaged
from bench.tricks.base import Trick


@TRICKS.register("ema")
class EMA(Trick):
    name = "ema"
    delivers = "ema"

    def __init__(self, decay: float, every: int):
        self.decay, self.every = decay, every
        self.model: AveragedModel | None = None
        self.steps = 0  # real optimizer steps seen

    @classmethod
    def from_config(cls, train_cfg: Any) -> EMA | None:
        ema = train_cfg.ema
        return cls(ema.decay, ema.every) if ema is not None else None

    def on_setup(self, state: Any) -> None:
        self.model = AveragedModel(
            state.model, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=True
        )

    def after_step(self, state: Any, stepped: bool) -> bool:
        if stepped:
            self.steps += 1
            if self.steps % self.every == 0:
                self.model.update_parameters(state.model)
        return True

    def finish(self, state: Any, metrics: dict[str, float]) -> None:
        metrics.update(evaluate_averaged(state, self.model, self.delivers))

    def delivered_model(self) -> Any:
        return self.model.module  # the EMA model is what this variant delivers and exports

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.steps = int(state["steps"])
