"""Schema building blocks shared by recipes and tuning studies."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict

# Recipe and study names: they become folder names and MLflow experiment names. Always used
# with ``fullmatch``: ``match`` with ``$`` lets a trailing newline through.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_name(name: str, what: str) -> str:
    """A recipe or study name: a single safe folder name."""
    if not NAME_RE.fullmatch(name):
        raise ValueError(
            f"{what} must start with a letter or digit and use only ASCII letters, digits, "
            f"'_', '.', '-' (it names a folder and an MLflow experiment); got {name!r}"
        )
    return name


class Strict(BaseModel):
    """Every key is consumed or rejected."""

    model_config = ConfigDict(extra="forbid")


class ComponentConfig(BaseModel):
    """A component's name plus the keys passed through to its class (checked against its signature)."""

    model_config = ConfigDict(extra="allow")

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})
