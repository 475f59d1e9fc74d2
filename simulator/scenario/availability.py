"""[availability]: who is online when, and who drops out of a round."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from simulator.scenario.fields import Fraction, Model, PositiveFloat


class AlwaysAvailable(Model):
    kind: Literal["always"]


class BernoulliAvailability(Model):
    """Each selected client drops out of a round with probability p_drop (sends nothing)."""

    kind: Literal["bernoulli"]
    p_drop: Fraction


class SessionAvailability(Model):
    """On/off sessions, generated (exponential dwell times) or read from a CSV file."""

    kind: Literal["sessions"]
    mean_online_s: PositiveFloat | None = None
    mean_offline_s: PositiveFloat | None = None
    file: str | None = None
    p_drop: Fraction = 0.0

    @model_validator(mode="after")
    def _check(self) -> SessionAvailability:
        generated = self.mean_online_s is not None and self.mean_offline_s is not None
        if generated == (self.file is not None):
            raise ValueError(
                "give either mean_online_s and mean_offline_s (generated sessions) or file "
                "(a CSV of client,start_s,end_s online intervals), not both or neither"
            )
        return self


Availability = Annotated[
    AlwaysAvailable | BernoulliAvailability | SessionAvailability, Field(discriminator="kind")
]
