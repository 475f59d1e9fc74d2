"""The SimPy engine: a server process and one process per client-round, on one simulated clock.

Per client-round: download the global state over the client's downlink, compute (the trainer
runs at the start of this phase in zero simulated time; the phase lasts the work divided by
the device speed), upload the message over the uplink. Links are deterministic functions
of time and clients do not contend, so the server process plans each client-round when it
starts and schedules one event at its end. Each round plans every download first, then hands
the clients that received the global state to the trainer together (`begin_round`), so an
executor may train them in parallel; compute and upload are planned after. A client whose
online session ends mid-phase loses the round; the phase and the bytes moved so far are
recorded. The synchronous strategy waits for every selected client that did not drop out;
a client that goes offline is noticed at once (it disconnects), so the round ends at the
latest finish or failure time.

This module imports no torch: the trainer is handed in.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import simpy

from simulator.devices import AvailabilityModel, Fleet, build_fleet
from simulator.network.faults import LOST, FaultModel
from simulator.network.link import LinkSet, build_links
from simulator.scenario import Method, Scenario
from simulator.training.base import LocalResult, Trainer

log = logging.getLogger(__name__)

NO_CLIENT_RETRY_S = 60.0  # when nobody is online, the server looks again after this long
PHASES = ("download", "compute", "upload")


@dataclass(frozen=True)
class World:
    """What every method arm shares: clients, devices, links, availability (common numbers)."""

    scenario: Scenario
    fleet: Fleet
    uplinks: LinkSet
    downlinks: LinkSet
    availability: AvailabilityModel
    faults: FaultModel


def build_world(scenario: Scenario, source: str = "scenario") -> World:
    """Draw the population and load or generate every link from the scenario's seed."""
    n = scenario.population.clients
    fleet = build_fleet(scenario.population, scenario.devices, scenario.seed, source)
    uplinks, downlinks = build_links(scenario.network, n, scenario.seed)
    availability = AvailabilityModel(scenario.availability, scenario.seed)
    faults = FaultModel(scenario.faults, scenario.seed)
    return World(scenario, fleet, uplinks, downlinks, availability, faults)


class ClientRound:
    """The record of one client in one round (a row of clients.csv)."""

    __slots__ = (
        "busy",
        "client",
        "down_bytes",
        "end",
        "energy",
        "offline_at",
        "phase",
        "round",
        "status",
        "times",
        "up_bytes",
    )

    def __init__(self, round_index: int, client: int) -> None:
        self.round = round_index
        self.client = client
        self.status = "ok"
        self.phase = ""
        self.times: list[float | None] = [None] * 6
        self.busy = [0.0, 0.0, 0.0]  # seconds in download, compute, upload
        self.down_bytes = 0
        self.up_bytes = 0
        self.energy = 0.0
        self.end = -math.inf  # when the client finished or failed
        self.offline_at = math.inf  # when the client's online session ends

    def phase_done(self, index: int, start: float, end: float, offline_at: float) -> bool:
        """Record a phase [start, end), cut at offline_at if the client goes offline first."""
        done = end <= offline_at
        if not done:
            end = offline_at
            self.status, self.phase = "interrupted", PHASES[index]
        self.times[2 * index] = start
        self.times[2 * index + 1] = self.end = end
        self.busy[index] = end - start
        return done

    def row(self, device: str) -> tuple[Any, ...]:
        """The clients.csv row."""
        return (
            self.round,
            self.client,
            device,
            self.status,
            self.phase,
            *self.times,
            self.down_bytes,
            self.up_bytes,
            self.energy,
        )


class Engine:
    """Runs one method arm over a World, round by round, reporting each round to a sink."""

    def __init__(self, world: World, method: Method, trainer: Trainer) -> None:
        self.world = world
        self.method = method
        self.trainer = trainer
        self.env = simpy.Environment()
        self.results: dict[int, LocalResult] = {}

    # --- client side ----------------------------------------------------------------------

    def _download(self, rec: ClientRound, start: float) -> None:
        """Fix the download phase from start; a client offline before it ends is interrupted.

        Links are deterministic functions of time and clients do not contend, so a client's
        whole round is known at its start: each phase is planned, not simulated step by step.
        """
        w, client = self.world, rec.client
        rec.offline_at = w.availability.online_until(client, start)
        down = self.trainer.downlink_bytes(client)
        end = start + w.downlinks.transfer_time(client, down, start)
        if rec.phase_done(0, start, end, rec.offline_at):
            rec.down_bytes = down
        else:
            delivered = w.downlinks.delivered_bytes(client, start, rec.offline_at)
            rec.down_bytes = int(min(down, delivered))

    def _compute_and_upload(self, rec: ClientRound) -> LocalResult | None:
        """Plan compute (the trainer's work, in zero simulated time) and upload after download.

        Returns the result if it reaches the server.
        """
        w, client, offline_at = self.world, rec.client, rec.offline_at
        result = self.trainer.train(client, rec.round)
        start = rec.end
        end = start + result.compute_seconds(w.fleet.flops[client])
        if not rec.phase_done(1, start, end, offline_at):
            return None
        up = result.uplink_bytes
        start, end = end, end + w.uplinks.transfer_time(client, up, end)
        if not rec.phase_done(2, start, end, offline_at):
            rec.up_bytes = int(min(up, w.uplinks.delivered_bytes(client, start, offline_at)))
            return None
        rec.up_bytes = up
        received = w.faults.apply(rec.round, client, result.message)
        if received is None:
            rec.status = LOST
            return None
        return replace(result, message=received)

    def _finish(self, rec: ClientRound) -> simpy.Event:
        """The event that fires when the client finishes or fails, carrying its record.

        The whole path is planned at its start, so a client-round is one timeout event rather
        than a process: the same semantics at a third of the scheduling cost, which matters at
        a million client-rounds.
        """
        if rec.status == "dropped":
            return self.env.timeout(0.0, rec)
        if rec.status == "ok":
            result = self._compute_and_upload(rec)
            if result is not None:
                self.results[rec.client] = result
        rec.energy = self.world.fleet.energy_j(rec.client, *rec.busy)
        return self.env.timeout(rec.end - self.env.now, rec)

    # --- server side ----------------------------------------------------------------------

    def _select(self, round_index: int) -> Generator:
        """Clients for this round, waiting while nobody is online."""
        sc = self.world.scenario
        while True:
            chosen = self.world.availability.select(
                round_index, self.env.now, sc.population.clients, sc.population.per_round
            )
            if len(chosen):
                return chosen
            log.info("round %d: nobody online at %.1f s; retrying", round_index, self.env.now)
            yield self.env.timeout(NO_CLIENT_RETRY_S)

    def _round(self, round_index: int) -> Generator:
        env, w = self.env, self.world
        start = env.now
        selected = yield from self._select(round_index)
        dropped = w.availability.dropped(round_index, selected).tolist()
        records = [ClientRound(round_index, c) for c in selected.tolist()]
        for rec, drop in zip(records, dropped, strict=True):
            if drop:
                rec.status = "dropped"
            else:
                self._download(rec, env.now)
        ready = {r.client: r.end for r in records if r.status == "ok"}
        self.trainer.begin_round(round_index, list(ready), self._uplink_capacity(ready))
        yield env.all_of([self._finish(rec) for rec in records])
        received = [(r.client, self.results.pop(r.client)) for r in records if r.status == "ok"]
        self.results.clear()
        rejected = self.trainer.aggregate(round_index, received)
        for rec in records:
            if rec.client in rejected:
                rec.status = "corrupt"
        return RoundOutcome(round_index, start, env.now, records, len(received) - len(rejected))

    def _uplink_capacity(self, ready: dict[int, float]) -> Callable[[int, float], int]:
        """Bytes a client's uplink delivers within `seconds` of receiving the global state.

        What a client can measure before it trains; a link-aware codec sizes its message by it.
        """
        uplinks = self.world.uplinks

        def capacity(client: int, seconds: float) -> int:
            start = ready[client]
            return int(uplinks.delivered_bytes(client, start, start + seconds))

        return capacity

    def run(
        self, first_round: int, start_s: float, on_round: Callable[[RoundOutcome], None]
    ) -> None:
        """Simulate rounds first_round..R (1-based) from start_s, calling on_round after each."""
        self.env = simpy.Environment(initial_time=start_s)
        rounds = self.world.scenario.server.rounds

        def server() -> Generator:
            for r in range(first_round, rounds + 1):
                outcome = yield from self._round(r)
                on_round(outcome)

        self.env.process(server())
        self.env.run()


@dataclass
class RoundOutcome:
    """What the server saw in one round."""

    round: int
    start_s: float
    end_s: float
    clients: list[ClientRound]
    received: int

    def row(self) -> tuple[Any, ...]:
        """The rounds.csv row (energy over clients that did any work)."""
        worked = [c for c in self.clients if c.status != "dropped"]
        energies = np.array([c.energy for c in worked]) if worked else np.zeros(1)
        slowest = max(worked, key=lambda c: c.end, default=None)
        phase = "" if slowest is None else PHASES[int(np.argmax(slowest.busy))]
        statuses = [c.status for c in self.clients]
        return (
            self.round,
            self.start_s,
            self.end_s,
            self.end_s - self.start_s,
            len(self.clients),
            self.received,
            statuses.count("dropped"),
            statuses.count("interrupted"),
            statuses.count("corrupt"),
            statuses.count(LOST),
            sum(c.up_bytes for c in self.clients),
            sum(c.down_bytes for c in self.clients),
            float(energies.mean()),
            float(energies.max()),
            "" if slowest is None else slowest.client,
            phase,
        )
