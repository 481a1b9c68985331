"""Stochastic Weight Averaging (``train.swa``): from ``start_epoch`` on, ``AveragedModel``
averages the weights after every epoch and ``SWALR`` holds the LR instead of the main schedule.

- Per-layer LRs survive: ``swa.lr`` is the target of the recipe's base LR and each param group
  anneals to ``swa.lr`` times its own ratio (``lr_scale``: head_lr_mult, layer_decay), so the SWA
  phase keeps the ratios the rest of the run had.
- At the end the averaged weights get BatchNorm statistics of their own (frozen norms keep the
  pretrained ones), are evaluated as ``*/acc_swa``, and are what the variant delivers: it is scored on
  them (``*/acc``) and exports them; the raw weights are kept beside them (``*/acc_raw``).
"""

from __future__ import annotations

from typing import Any

from torch.optim.swa_utils import SWALR, AveragedModel

from bench.components.freeze import frozen_norm_names
from bench.tricks import TRICKS
from bench.tricks.averaging import evaluate_averaged, update_bn
from bench.tricks.base import Trick


def group_targets(optimizer: Any, cfg: Any) -> list[float]:
    """SWA LR per param group: the target of the recipe's base LR (``swa.lr_factor`` times the
    variant's own base LR, else the absolute ``swa.lr``) scaled by the group's ratio to it, so
    one ``lr_factor`` means the same cut for every optimizer on a matrix axis."""
    base = cfg.lr if cfg.lr_factor is None else cfg.lr_factor * float(optimizer.defaults["lr"])
    return [base * float(g.get("lr_scale", 1.0)) for g in optimizer.param_groups]


@TRICKS.register("swa")
class SWA(Trick):
    name = "swa"
    delivers = "swa"

    def __init__(self, cfg: Any):
        self.cfg = cfg
        self.model: AveragedModel | None = None
        self.scheduler: SWALR | None = None

    @classmethod
    def from_config(cls, train_cfg: Any) -> SWA | None:
        return cls(train_cfg.swa) if train_cfg.swa is not None else None

    def on_setup(self, state: Any) -> None:
        self.model = AveragedModel(state.model)
        self.scheduler = SWALR(
            state.optimizer,
            swa_lr=group_targets(state.optimizer, self.cfg),
            anneal_epochs=self.cfg.anneal_epochs,
            anneal_strategy=self.cfg.anneal_strategy,
        )

    def active(self, epoch: int) -> bool:
        return epoch >= self.cfg.start_epoch

    def after_step(self, state: Any, stepped: bool) -> bool:
        return not self.active(state.epoch)  # SWALR, stepped per epoch, holds the LR meanwhile

    def on_epoch_end(self, state: Any, record: dict[str, float]) -> bool:
        if not self.active(state.epoch):
            return True
        self.model.update_parameters(state.model)
        self.scheduler.step()
        return False

    def finish(self, state: Any, metrics: dict[str, float]) -> None:
        update_bn(state.train_loader, self.model, frozen_norm_names(state.model), state.precision)
        metrics.update(evaluate_averaged(state, self.model, self.delivers))

    def delivered_model(self) -> Any:
        return self.model.module  # the averaged model is this variant's result

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.scheduler.load_state_dict(state["scheduler"])
