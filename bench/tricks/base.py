"""The protocol every trick implements: no-op defaults, so a trick overrides only its points."""

from __future__ import annotations

from typing import Any


class Trick:
    """A unit that changes training at named points of the loop (see ``bench.tricks``)."""

    name = "trick"

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

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def params(self) -> dict[str, str]:
        """What this trick set, recorded as run parameters (e.g. backend flags)."""
        return {}
