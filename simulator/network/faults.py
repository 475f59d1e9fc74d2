"""Uploads damaged in transit (the scenario's [faults]): lost, corrupted or truncated.

Applied between the client's send and the server's receive, as in FLSim's channel split: the
client's bytes and upload time are what it sent; the server then gets nothing (lost), the
message with one byte flipped (corrupt) or a prefix of it (truncate), and must cope (a message
that fails to decode is rejected and counted, never a crash). Which uploads are hit is drawn
per (round, client) from the "faults" seed scope, so every arm sees the same faults.
"""

from __future__ import annotations

from simulator import seeds
from simulator.scenario import Faults

LOST = "lost"


class FaultModel:
    """Decides and applies the transit fault of each upload."""

    def __init__(self, spec: Faults, seed: int) -> None:
        self.spec = spec
        self.seed = seed
        self.active = spec.drop + spec.corrupt + spec.truncate > 0

    def apply(self, round_index: int, client: int, message: bytes | int) -> bytes | int | None:
        """What the server receives: the message, a damaged copy, or None when it is lost."""
        if not self.active:
            return message
        gen = seeds.rng(self.seed, "faults", round_index, client)
        draw = gen.random()
        spec = self.spec
        if draw < spec.drop:
            return None
        if draw < spec.drop + spec.corrupt:
            data = bytearray(message)
            data[gen.integers(len(data))] ^= int(gen.integers(1, 256))
            return bytes(data)
        if draw < spec.drop + spec.corrupt + spec.truncate:
            return bytes(message[: gen.integers(len(message))])
        return message
