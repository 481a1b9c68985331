"""The protocol every trick implements: no-op defaults, so a trick overrides only its points."""

from __future__ import annotations

from typing import Any


class Trick:
    """A unit that changes training at named points of the loop (see ``bench.tricks``).

    A trick that produces a model of its own (SWA, EMA) declares it: ``delivers`` names it (the
    suffix of its metrics, ``test/acc_<delivers>``) and ``delivered_model()`` returns it after
    ``finish``. The engine then scores the variant on that model (``*/acc``), keeps the trained
    weights' accuracy as ``*/acc_raw`` and exports the delivered model, so reports, the tuner
    and ``runs.csv`` need no change for the next averaging trick.
    """

    name = "trick"
    delivers: str | None = None  # the model this trick delivers, or None: the trained weights

    @classmethod
    def from_config(cls, train_cfg: Any) -> Trick | None:
        """The trick for this recipe's ``train`` section, or None when it is off."""
        raise NotImplementedError

    def on_model(self, state: Any) -> None:
        pass

    def on_setup(self, state: Any) -> None:
        pass

    def on_epoch_start(self, state: Any) -> None:
        pass

    def after_backward(self, state: Any) -> None:
        pass

    def after_step(self, state: Any, stepped: bool) -> bool:
        return True

    def on_epoch_end(self, state: Any, record: dict[str, float]) -> bool:
        return True

    def finish(self, state: Any, metrics: dict[str, float]) -> None:
        pass

    def delivered_model(self) -> Any:
        """The model the variant delivers when ``delivers`` is set (called after ``finish``)."""
        return None

    def metric_names(self, splits: list[str]) -> list[str]:
        """The final metrics this trick adds (for tables and the MLflow view)."""
        return [f"{split}/acc_{self.delivers}" for split in splits] if self.delivers else []

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def params(self) -> dict[str, str]:
        """What this trick set, recorded as run parameters (e.g. backend flags)."""
        return {}
