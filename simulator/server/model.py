"""The server's model: the global state and everything the server does with it (numpy only).

The message path ends here: a client encodes its update (simulator/training/client.py), the
network moves and may damage the bytes (simulator/network/), and the server model decodes them
(`receive`): a message that fails to decode is rejected, logged and left out, the round goes
on. The decoded updates are averaged with their weights (aggregation.py) and the arm's server
optimizer (optimizers.py) applies the mean to the global state, which becomes the next version.
The global state is broadcast through the arm's downlink codec (dense fp16 by default),
encoded once per version and seeded by it; clients train from the decoded broadcast, so a
lossy downlink really costs accuracy. A client algorithm's server arrays (SCAFFOLD's control
variate c; simulator/training/algorithms.py) ride the same downlink through the same codec,
their bytes counted in the broadcast; clients then send a bundle (control.py): the update and
one Δ per array, and the algorithm updates its arrays from the Δs that decoded.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from simulator import seeds
from simulator.errors import MessageError
from simulator.methods.base import CodecContext, Group
from simulator.server.aggregation import fedavg
from simulator.server.control import unbundle
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
        algorithm: Any = None,
        clients: int = 0,
    ) -> None:
        """algorithm: the arm's client algorithm (None: no server arrays); clients: the
        population size N it updates its arrays with."""
        self.weights = initial
        self.groups = groups
        self.codec = codec  # the uplink codec: decodes what clients send
        self.downlink = downlink
        self.optimizer = optimizer
        self.seed = seed
        self.version = 0  # the last aggregated round (server update)
        self.algorithm = algorithm
        self.clients = clients
        self.names: tuple[str, ...] = () if algorithm is None else tuple(algorithm.shared)
        self.shared = {name: np.zeros_like(initial) for name in self.names}
        self._broadcast: tuple[int, np.ndarray, dict[str, np.ndarray]] | None = None

    def _send(self, values: np.ndarray, part: int) -> tuple[bytes, np.ndarray]:
        """One downlink message of this version (part 0: the global state) and its decoding."""
        seed = seeds.seed_sequence(self.seed, "downlink", self.version, *([part] if part else []))
        context = CodecContext(self.groups, int(seed.generate_state(1)[0]))
        message = self.downlink.encode(values, context)
        return message, self.downlink.decode(message, context)

    def _broadcast_all(self) -> tuple[int, np.ndarray, dict[str, np.ndarray]]:
        if self._broadcast is None:
            message, state = self._send(self.weights, 0)
            size, shared = len(message), {}
            for part, name in enumerate(self.names, start=1):
                message, shared[name] = self._send(self.shared[name], part)
                size += len(message)
            self._broadcast = (size, state, shared)
        return self._broadcast

    def broadcast(self) -> tuple[int, np.ndarray]:
        """The global state as clients receive it: the downlink bytes (the global state's
        message and the server arrays') and the state it decodes to."""
        return self._broadcast_all()[:2]

    def broadcast_arrays(self) -> dict[str, np.ndarray]:
        """The server arrays as clients receive them (empty without a client algorithm's)."""
        return self._broadcast_all()[2]

    def receive(self, round_index: int, received: list[tuple[int, bytes, float]]) -> set[int]:
        """Decode (client, message, weight) triples, aggregate those that decode and step the
        global state, which becomes version round_index. Returns the positions rejected."""
        context = CodecContext(self.groups)
        updates, uploads, rejected = [], [], set()
        for index, (client, message, weight) in enumerate(received):
            try:
                parts = unbundle(message, 1 + len(self.names)) if self.names else [message]
                delta = self.codec.decode(parts[0], context)
                upload = {
                    name: self.downlink.decode(part, context)
                    for name, part in zip(self.names, parts[1:], strict=True)
                }
            except MessageError as exc:
                log.warning("round %d: rejected client %d's message: %s", round_index, client, exc)
                rejected.add(index)
                continue
            updates.append((weight, delta))
            uploads.append(upload)
        mean = fedavg(updates)
        if mean is not None:
            self.weights = self.optimizer.step(self.weights, mean)
        if self.names:
            self.shared = self.algorithm.server_update(self.shared, uploads, self.clients)
        self._broadcast = None
        self.version = round_index
        return rejected

    def arrays(self) -> dict[str, np.ndarray]:
        """What a checkpoint keeps: the global state, the optimizer's and the client
        algorithm's arrays."""
        state = {f"server-{key}": value for key, value in self.optimizer.state().items()}
        shared = {f"shared-{key}": value for key, value in self.shared.items()}
        return {"global": self.weights, **state, **shared}

    def load(self, arrays: dict[str, np.ndarray], version: int) -> None:
        """Restore what arrays() returned, as of `version`."""
        self.weights = arrays["global"]
        prefix = "server-"
        self.optimizer.load(
            {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
        )
        self.shared = {name: arrays[f"shared-{name}"] for name in self.names}
        self._broadcast = None
        self.version = version
