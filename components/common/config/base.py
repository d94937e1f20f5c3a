"""What every config section is built from: the strict base model, the error type, shared field types.

Shared by the run's parameters (run.py) and the deployment settings (deployment.py), so neither imports the other
for them.
"""
from __future__ import annotations

import enum
import typing
from typing import Annotated, Any

from components.common.errors import InputError
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator


class ConfigError(InputError, ValueError):
    """A config that cannot be used; the message names every offending key."""


class Strict(BaseModel):
    # allow_inf_nan=False: an infinite duration or weight is never meant, and JSON (the config artifact every
    # stage reads) cannot carry it
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _booleans(cls, v, info):
        """YAML reads an unquoted on/off/yes/no as true/false. For an on/off/auto toggle that is what was meant
        (`mixed_precision: on`); for a number it is a mistake (pydantic would read `batch_size: true` as 1)."""
        if not isinstance(v, bool) or not info.field_name:
            return v
        annotation = _bare(cls.model_fields[info.field_name].annotation)
        if annotation is Toggle:
            return Toggle.ON if v else Toggle.OFF
        if annotation in (int, float):
            raise ValueError(f"a number, not {str(v).lower()}")
        return v


class Toggle(str, enum.Enum):
    """An on/off/auto switch (training.xla, ...); here because Strict reads YAML's true/false as one."""

    ON = "on"
    OFF = "off"
    AUTO = "auto"  # on where it helps (GPU), off elsewhere


def _bare(annotation: Any) -> Any:
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _ordered(v: tuple[float, float]) -> tuple[float, float]:
    if v[0] > v[1]:
        raise ValueError(f"must be [low, high] with low <= high, got {list(v)}")
    return v


FloatRange = Annotated[tuple[float, float], AfterValidator(_ordered)]
IntRange = Annotated[tuple[int, int], AfterValidator(_ordered)]
Probability = Annotated[float, Field(ge=0, le=1)]
