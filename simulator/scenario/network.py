"""[network]: the uplink and downlink kinds (constant, generated, replayed traces, ratio)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from simulator.network.traces import READERS
from simulator.scenario.fields import (
    MAX_GENERATED_SAMPLES,
    MAX_MBPS,
    Count,
    Fraction,
    Mbps,
    MbpsRange,
    Model,
    NonNegFloat,
    OpenFraction,
    PositiveFloat,
    PositiveSeconds,
    at_most,
    ordered,
    within,
)

Factor = Annotated[PositiveFloat, within(1e-6, 1e6, "times")]

JITTER_TRACE_S = 3600.0  # each generated jitter trace spans an hour (network/synthetic.py)


def _samples_fit(samples: float, what: str) -> None:
    """Generated traces are built in memory before anything runs: refuse a pool too large."""
    if samples > MAX_GENERATED_SAMPLES:
        raise ValueError(
            f"{what} would generate ~{samples:.3g} trace samples, more than the "
            f"{MAX_GENERATED_SAMPLES:,} that fit in memory; lower pool or lengthen the steps"
        )


class ConstantLink(Model):
    kind: Literal["constant"]
    mbps: Mbps


class UnlimitedLink(Model):
    """Infinite capacity: transfers take only the latency (e.g. an unmodelled downlink)."""

    kind: Literal["unlimited"]


class StragglerTailLink(Model):
    """The paper's heterogeneous LTE profile (fed-fstq-paper.md §6 item 7)."""

    kind: Literal["straggler_tail"]
    straggler_fraction: Fraction = 0.2
    straggler_mbps: MbpsRange = (0.5, 2.0)
    normal_mbps: MbpsRange = (5.0, 20.0)
    jitter_sigma: Annotated[NonNegFloat, at_most(10.0, "(log-normal sigma)")] = 0.3
    jitter_step_s: Annotated[PositiveFloat, at_most(JITTER_TRACE_S, "s")] = 60.0
    pool: Count = 64

    @model_validator(mode="after")
    def _check(self) -> StragglerTailLink:
        ordered(self.straggler_mbps, "straggler_mbps")
        ordered(self.normal_mbps, "normal_mbps")
        _samples_fit(
            self.pool * JITTER_TRACE_S / self.jitter_step_s, "pool × 3600 s / jitter_step_s"
        )
        return self


class MarkovLink(Model):
    """Two-state (good/bad) Markov-modulated capacity with exponential dwell times."""

    kind: Literal["markov"]
    good_mbps: Mbps
    bad_mbps: Annotated[NonNegFloat, at_most(MAX_MBPS, "Mbps")]
    mean_good_s: PositiveSeconds
    mean_bad_s: PositiveSeconds
    duration_s: PositiveSeconds = 3600.0
    pool: Count = 64

    @model_validator(mode="after")
    def _check(self) -> MarkovLink:
        dwell = min(self.mean_good_s, self.mean_bad_s)
        _samples_fit(self.pool * self.duration_s / dwell, "pool × duration_s / mean dwell")
        return self


class TraceLink(Model):
    """Replayed trace files, assigned to clients (seeded) with random start offsets.

    assign = "paired": client i replays file j of this list where it replays file j of the
    other direction's list, from the same start offset (the up and down traces of one
    recording, e.g. Mahimahi's *.up / *.down, sorted alike by their globs).
    """

    kind: Literal["trace"]
    files: list[str] = Field(min_length=1)
    format: str
    options: dict[str, Any] = {}
    scale: Factor = 1.0
    assign: Literal["random", "round_robin", "paired"] = "random"

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        READERS.resolve(value)  # a built-in format or an importable reader class
        return value


class RatioLink(Model):
    """This direction = the other direction's link (same trace and offset) × ratio."""

    kind: Literal["ratio"]
    ratio: Factor


LinkSpec = Annotated[
    ConstantLink | UnlimitedLink | StragglerTailLink | MarkovLink | TraceLink | RatioLink,
    Field(discriminator="kind"),
]


class Network(Model):
    uplink: LinkSpec
    downlink: LinkSpec
    latency_ms: Annotated[NonNegFloat, at_most(1e6, "ms")] = 0.0
    loss: OpenFraction = 0.0
    trace_dir: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Network:
        if self.uplink.kind == "ratio" and self.downlink.kind == "ratio":
            raise ValueError("uplink and downlink cannot both be kind = 'ratio'; give one a link")
        for this, other in (("uplink", "downlink"), ("downlink", "uplink")):
            link, base = getattr(self, this), getattr(self, other)
            if not (isinstance(link, TraceLink) and link.assign == "paired"):
                continue
            if not isinstance(base, TraceLink) or base.assign == "paired":
                raise ValueError(
                    f"{this}.assign = 'paired' follows the {other}'s trace assignment: make "
                    f"{other} a trace link with assign = 'random' or 'round_robin'"
                )
            if len(link.files) != len(base.files):
                raise ValueError(
                    f"{this}.assign = 'paired' pairs file i with the {other}'s file i, but "
                    f"there are {len(link.files)} {this} and {len(base.files)} {other} files; "
                    "give globs that match the same recordings"
                )
        return self
