"""The records of a run: one client-round (a clients.csv row) and one round (a rounds.csv row),
as the engine fills them in, with the JSON state of a client-round still in flight (FedBuff
checkpoints)."""

from __future__ import annotations

import base64
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from simulator.network.faults import LOST
from simulator.recorder import ClientRow, RoundRow
from simulator.training.base import LocalResult

PHASES = ("download", "compute", "upload")


class ClientRound:
    """The record of one client-round (a row of clients.csv).

    key: the client-round's seed coordinate (the round; FedBuff: the start counter).
    round: the rounds.csv row it is reported in. version: the global version it trained on
    (FedBuff only).
    """

    __slots__ = (
        "busy",
        "client",
        "down_bytes",
        "end",
        "energy",
        "flop",
        "key",
        "loss_first",
        "loss_last",
        "offline_at",
        "phase",
        "result",
        "round",
        "staleness",
        "status",
        "times",
        "tokens",
        "up_bytes",
        "version",
    )
    SAVED = tuple(s for s in __slots__ if s not in ("offline_at", "result"))

    def __init__(self, key: int, client: int, version: int | None = None) -> None:
        self.key = self.round = key
        self.client = client
        self.version = version
        self.staleness: int | None = None
        self.status = "ok"
        self.phase = ""
        self.times: list[float | None] = [None] * 6
        self.busy = [0.0, 0.0, 0.0]  # seconds in download, compute, upload
        self.down_bytes = 0
        self.up_bytes = 0
        self.energy = 0.0
        self.end = -math.inf  # when the client finished or failed
        self.offline_at = math.inf  # when the client's online session ends
        self.result: LocalResult | None = None  # what reached the server, until aggregated
        # what the local training reported, once its compute phase completed
        self.loss_first: float | None = None
        self.loss_last: float | None = None
        self.tokens: int | None = None
        self.flop: float | None = None

    def trained(self, result: LocalResult) -> None:
        """Keep what the local round reported (its compute phase completed)."""
        self.loss_first, self.loss_last = result.loss_first, result.loss_last
        self.tokens, self.flop = result.tokens, result.work_flop

    def phase_done(self, index: int, start: float, end: float, offline_at: float) -> bool:
        """Record a phase [start, end), cut at offline_at if the client goes offline first."""
        self.times[2 * index] = start
        self.times[2 * index + 1] = self.end = end
        self.busy[index] = end - start
        if end <= offline_at:
            return True
        self.stop(index, offline_at, "interrupted")
        return False

    def stop(self, index: int, t: float, status: str) -> None:
        """End the client-round at t, inside phase `index`; later phases never happen."""
        self.status, self.phase = status, PHASES[index]
        self.times[2 * index + 1] = self.end = t
        self.busy[index] = t - self.times[2 * index]
        if index <= 1:  # the local round never finished
            self.loss_first = self.loss_last = self.tokens = self.flop = None
        for later in range(index + 1, 3):
            self.times[2 * later] = self.times[2 * later + 1] = None
            self.busy[later] = 0.0

    def row(self, device: str) -> ClientRow:
        """The clients.csv row (positional: the hot path, a row per client-round; its field
        order is tested against these attributes by name)."""
        return ClientRow(
            self.round,
            self.client,
            device,
            self.status,
            self.phase,
            *self.times,
            self.down_bytes,
            self.up_bytes,
            self.energy,
            self.version,
            self.staleness,
            self.loss_first,
            self.loss_last,
            self.tokens,
            self.flop,
        )

    def state(self) -> dict[str, Any]:
        """JSON-safe record of a client-round still in flight (FedBuff checkpoints)."""
        data = {name: getattr(self, name) for name in self.SAVED}
        data["result"] = None if self.result is None else _result_state(self.result)
        return data

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> ClientRound:
        """The record state() described."""
        rec = cls(data["key"], data["client"])
        for name in cls.SAVED:
            setattr(rec, name, data[name])
        rec.result = None if data["result"] is None else _result_from_state(data["result"])
        return rec


def _result_state(result: LocalResult) -> dict[str, Any]:
    message = result.message
    return {
        "message": message if isinstance(message, int) else base64.b64encode(message).decode(),
        "bytes": not isinstance(message, int),
        "num_samples": result.num_samples,
        "compute_s": result.compute_s,
        "work_flop": result.work_flop,
    }


def _result_from_state(data: dict[str, Any]) -> LocalResult:
    message = base64.b64decode(data["message"]) if data["bytes"] else int(data["message"])
    return LocalResult(message, data["num_samples"], data["compute_s"], data["work_flop"])


@dataclass
class RoundOutcome:
    """What the server saw in one round (one server update under FedBuff)."""

    round: int
    start_s: float
    end_s: float
    clients: list[ClientRound]
    received: int
    straggler: ClientRound | None  # the client the round waited on last

    def row(self) -> RoundRow:
        """The rounds.csv row (energy over clients that did any work)."""
        worked = [c for c in self.clients if c.status != "dropped"]
        energies = np.array([c.energy for c in worked]) if worked else np.zeros(1)
        slowest = self.straggler
        statuses = Counter(c.status for c in self.clients)
        return RoundRow(
            round=self.round,
            start_s=self.start_s,
            end_s=self.end_s,
            duration_s=self.end_s - self.start_s,
            selected=len(self.clients),
            received=self.received,
            **{status: statuses[status] for status in COUNTED},
            uplink_bytes=sum(c.up_bytes for c in self.clients),
            downlink_bytes=sum(c.down_bytes for c in self.clients),
            energy_j_mean=float(energies.mean()),
            energy_j_max=float(energies.max()),
            slowest_client="" if slowest is None else slowest.client,
            slowest_phase="" if slowest is None else PHASES[int(np.argmax(slowest.busy))],
        )


COUNTED = ("dropped", "interrupted", "corrupt", LOST, "late", "cancelled", "stale")
