"""Shared field types and the strict base model of every scenario section."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]

NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]

Fraction = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]

OpenFraction = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]

# Names become folder and file names (runs/<name>-seed<seed>/<arm>/...): 64 characters keep
# every path well inside the 255-byte limit of a file name.
MAX_NAME = 64

Slug = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=MAX_NAME)]

# Sizes and costs beyond these are unit errors, and would overflow the simulated clock's floats.
MAX_MB = 1e9  # 1 PB per message

MAX_SECONDS = 1e9  # ~32 years of compute per client-round

MAX_TFLOP = 1e9  # 1e21 FLOP per client-round

# Each client costs ~360 bytes of fleet and link arrays: 10 million take ~17 s and 3.6 GB to
# build here, and larger populations would exhaust memory before anything runs.
MAX_CLIENTS = 10_000_000

# Link rates beyond 1 Tbps or below 1 bit/s are unit errors; their transfer times under- or
# overflow the clock (1e300 Mbps gave NaN times mid-run).
MIN_MBPS, MAX_MBPS = 1e-6, 1e6

# Rounds beyond this would not finish in any host's lifetime; a larger value is a typo.
MAX_ROUNDS = 10_000_000

# Generated traces and data are built in memory before anything runs: a pool of link traces
# holds at most this many samples, a synthetic data set at most this many words (~10 GB).
MAX_GENERATED_SAMPLES = 10_000_000
MAX_SYNTHETIC_WORDS = 100_000_000

# A scenario's own sizes (pools, steps, ranks, batches...) above this are typos, and would
# exhaust memory or overflow numpy's integers before an error could say so.
MAX_COUNT = 1_000_000


def at_most(limit: float, unit: str) -> Any:
    """A finite, non-negative number no larger than limit (a larger one is a unit error)."""

    def check(value: float) -> float:
        if value > limit:
            raise ValueError(f"must be at most {limit:g} {unit}; a larger value is a unit error")
        return value

    return AfterValidator(check)


def within(low: float, high: float, unit: str) -> Any:
    """A number in [low, high] (outside it is a unit error: say so, with the bounds)."""

    def check(value: float) -> float:
        if not low <= value <= high:
            raise ValueError(
                f"must be between {low:g} and {high:g} {unit}; a value outside is a unit error"
            )
        return value

    return AfterValidator(check)


Megabytes = Annotated[NonNegFloat, at_most(MAX_MB, "MB")]

Mbps = Annotated[PositiveFloat, within(MIN_MBPS, MAX_MBPS, "Mbps")]

Count = Annotated[int, Field(gt=0, le=MAX_COUNT)]

Rounds = Annotated[int, Field(gt=0, le=MAX_ROUNDS)]

# [low, high] pairs: lax only in taking the list TOML and JSON give for the tuple (the items
# stay strict)
MbpsRange = Annotated[tuple[Mbps, Mbps], Field(strict=False)]

CountRange = Annotated[tuple[Count, Count], Field(strict=False)]

Seconds = Annotated[NonNegFloat, at_most(MAX_SECONDS, "s")]

PositiveSeconds = Annotated[PositiveFloat, at_most(MAX_SECONDS, "s")]

Teraflops = Annotated[NonNegFloat, at_most(MAX_TFLOP, "TFLOP")]


class Model(BaseModel):
    """Strict base: unknown keys are errors, a bool is never a number (`rounds = true` is not
    1 round) and configurations never change after validation."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def ordered(pair: tuple[float, float], what: str) -> tuple[float, float]:
    if pair[0] > pair[1]:
        raise ValueError(f"{what} must be [low, high] with low <= high, got {list(pair)}")
    return pair


def option_problems(exc: ValidationError) -> str:
    """An options model's errors on one line: `key: problem; key: problem`."""
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or '(options)'}: {e['msg']}" for e in exc.errors()
    )
