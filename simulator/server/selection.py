"""Client selection: whom the server asks to train, uniform among the clients online.

Both draws come from the "selection" seed scope (simulator/seeds.py), keyed by the round
(synchronous) or by FedBuff's start counter, so every method arm of a scenario selects the
same clients at the same moments (common random numbers). Who is online is the availability
model's (simulator/devices.py); this module only chooses among them.
"""

from __future__ import annotations

import itertools

import numpy as np

from simulator import seeds
from simulator.devices import AvailabilityModel


class Selection:
    """Uniform selection without replacement among the online clients."""

    def __init__(self, availability: AvailabilityModel, seed: int, clients: int) -> None:
        self.availability = availability
        self.seed = seed
        self.clients = clients

    def cohort(self, round_index: int, t: float, k: int) -> np.ndarray:
        """k clients sampled without replacement among those online at t (fewer if not enough)."""
        gen = seeds.rng(self.seed, "selection", round_index)
        if self.availability.sessions is None:
            return gen.choice(self.clients, k, replace=False)
        order = gen.permutation(self.clients)
        online = (c for c in order.tolist() if self.availability.online_until(c, t) > t)
        return np.fromiter(itertools.islice(online, k), dtype=np.int64)

    def one(self, key: int, t: float, busy: set[int]) -> int | None:
        """One client, uniform among those online at t and not busy (None when there is none).

        Drawn from the selection scope of `key`: a few cheap candidates first, then a full
        permutation, so a pick is usually O(1) yet never misses an eligible client.
        """
        gen = seeds.rng(self.seed, "selection", key)
        for order in (gen.integers(0, self.clients, 8), gen.permutation(self.clients)):
            for client in order.tolist():
                if client not in busy and self.availability.online_until(client, t) > t:
                    return client
        return None
