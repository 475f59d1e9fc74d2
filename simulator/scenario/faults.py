"""[faults]: uploads lost, corrupted or truncated in transit."""

from __future__ import annotations

from pydantic import model_validator

from simulator.scenario.fields import Fraction, Model


class Faults(Model):
    """Uploads damaged in transit, as fractions of the uploads that complete (seeded)."""

    drop: Fraction = 0.0  # lost: the server never receives the message
    corrupt: Fraction = 0.0  # one byte flipped
    truncate: Fraction = 0.0  # cut at a random length

    @model_validator(mode="after")
    def _check(self) -> Faults:
        if self.drop + self.corrupt + self.truncate > 1:
            raise ValueError("drop + corrupt + truncate must not exceed 1")
        return self
