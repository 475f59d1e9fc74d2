"""Shared field types and the strict base model of every scenario section."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]

NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]

Fraction = Annotated[float, Field(ge=0, le=1)]

OpenFraction = Annotated[float, Field(ge=0, lt=1)]

Slug = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]

# Sizes and costs beyond these are unit errors, and would overflow the simulated clock's floats.
MAX_MB = 1e9  # 1 PB per message

MAX_SECONDS = 1e9  # ~32 years of compute per client-round

MAX_TFLOP = 1e9  # 1e21 FLOP per client-round

# Each client costs ~360 bytes of fleet and link arrays: 10 million take ~17 s and 3.6 GB to
# build here, and larger populations would exhaust memory before anything runs.
MAX_CLIENTS = 10_000_000


def at_most(limit: float, unit: str) -> Any:
    """A finite, non-negative number no larger than limit (a larger one is a unit error)."""

    def check(value: float) -> float:
        if value > limit:
            raise ValueError(f"must be at most {limit:g} {unit}; a larger value is a unit error")
        return value

    return AfterValidator(check)


Megabytes = Annotated[NonNegFloat, at_most(MAX_MB, "MB")]

Seconds = Annotated[NonNegFloat, at_most(MAX_SECONDS, "s")]

Teraflops = Annotated[NonNegFloat, at_most(MAX_TFLOP, "TFLOP")]


class Model(BaseModel):
    """Strict base: unknown keys are errors and configurations never change after validation."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def ordered(pair: tuple[float, float], what: str) -> tuple[float, float]:
    if pair[0] > pair[1]:
        raise ValueError(f"{what} must be [low, high] with low <= high, got {list(pair)}")
    return pair


def option_problems(exc: ValidationError) -> str:
    """An options model's errors on one line: `key: problem; key: problem`."""
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or '(options)'}: {e['msg']}" for e in exc.errors()
    )
