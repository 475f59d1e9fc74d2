"""The server's model: the global state and everything the server does with it (numpy only).

The message path ends here: a client encodes its update (simulator/training/client.py), the
network moves and may damage the bytes (simulator/network/), and the server model decodes them
(`receive`): a message that fails to decode is rejected, logged and left out, the round goes
on. The decoded updates are averaged with their weights (aggregation.py) and the arm's server
optimizer (optimizers.py) applies the mean to the global state, which becomes the next version.
The global state is broadcast through the arm's downlink codec (dense fp16 by default),
encoded once per version and seeded by it; clients train from the decoded broadcast, so a
lossy downlink really costs accuracy.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from simulator import seeds
from simulator.errors import MessageError
from simulator.methods.base import CodecContext, Group
from simulator.server.aggregation import fedavg
from simulator.server.optimizers import ServerOptimizer

log = logging.getLogger(__name__)


class ServerModel:
    """The global state of one arm, its broadcast, decoding and aggregation."""

    def __init__(
        self,
        initial: np.ndarray,
        groups: tuple[Group, ...],
        codec: Any,
        downlink: Any,
        optimizer: ServerOptimizer,
        seed: int,
    ) -> None:
        self.weights = initial
        self.groups = groups
        self.codec = codec  # the uplink codec: decodes what clients send
        self.downlink = downlink
        self.optimizer = optimizer
        self.seed = seed
        self.version = 0  # the last aggregated round (server update)
        self._broadcast: tuple[int, np.ndarray] | None = None

    def broadcast(self) -> tuple[int, np.ndarray]:
        """The global state as clients receive it: the downlink message's length and the
        state it decodes to."""
        if self._broadcast is None:
            seed = seeds.seed_sequence(self.seed, "downlink", self.version)
            context = CodecContext(self.groups, int(seed.generate_state(1)[0]))
            message = self.downlink.encode(self.weights, context)
            self._broadcast = (len(message), self.downlink.decode(message, context))
        return self._broadcast

    def receive(self, round_index: int, received: list[tuple[int, bytes, float]]) -> set[int]:
        """Decode (client, message, weight) triples, aggregate those that decode and step the
        global state, which becomes version round_index. Returns the positions rejected."""
        context = CodecContext(self.groups)
        updates, rejected = [], set()
        for index, (client, message, weight) in enumerate(received):
            try:
                delta = self.codec.decode(message, context)
            except MessageError as exc:
                log.warning("round %d: rejected client %d's message: %s", round_index, client, exc)
                rejected.add(index)
                continue
            updates.append((weight, delta))
        mean = fedavg(updates)
        if mean is not None:
            self.weights = self.optimizer.step(self.weights, mean)
        self._broadcast = None
        self.version = round_index
        return rejected

    def arrays(self) -> dict[str, np.ndarray]:
        """What a checkpoint keeps: the global state and the optimizer's arrays."""
        state = {f"server-{key}": value for key, value in self.optimizer.state().items()}
        return {"global": self.weights, **state}

    def load(self, arrays: dict[str, np.ndarray], version: int) -> None:
        """Restore what arrays() returned, as of `version`."""
        self.weights = arrays["global"]
        prefix = "server-"
        self.optimizer.load(
            {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
        )
        self._broadcast = None
        self.version = version
