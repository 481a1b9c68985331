"""Schema building blocks shared by recipes and tuning studies."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict

# Recipe, study and experiment names: they become folder names and MLflow experiment names.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class Strict(BaseModel):
    """Every key is consumed or rejected."""

    model_config = ConfigDict(extra="forbid")


class ComponentConfig(BaseModel):
    """A component's name plus the keys passed through to its class (checked against its signature)."""

    model_config = ConfigDict(extra="allow")

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})
