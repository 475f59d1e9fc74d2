"""The SimPy engine: a server process and one process per client-round, on one simulated clock.

Per client-round: download the global state over the client's downlink, compute (the trainer
runs at the start of this phase in zero simulated time; the phase lasts the work divided by
the device speed), upload the message over the uplink. A client whose online session ends
mid-phase loses the round; the phase and the bytes moved so far are recorded. The synchronous
strategy waits for every selected client that did not drop out; a client that goes offline
is noticed at once (it disconnects), so the round ends at the latest finish or failure time.

This module imports no torch: the trainer is handed in.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy

from simulator.devices import AvailabilityModel, Fleet, build_fleet
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


def build_world(scenario: Scenario, source: str = "scenario") -> World:
    """Draw the population and load or generate every link from the scenario's seed."""
    n = scenario.population.clients
    fleet = build_fleet(scenario.population, scenario.devices, scenario.seed, source)
    uplinks, downlinks = build_links(scenario.network, n, scenario.seed)
    return World(
        scenario, fleet, uplinks, downlinks, AvailabilityModel(scenario.availability, scenario.seed)
    )


class ClientRound:
    """The record of one client in one round (a row of clients.csv)."""

    __slots__ = (
        "client",
        "down_bytes",
        "end",
        "energy",
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
        self.down_bytes = 0
        self.up_bytes = 0
        self.energy = 0.0
        self.end = -math.inf

    def durations(self) -> tuple[float, float, float]:
        """Seconds spent in download, compute and upload (0 for phases not reached)."""
        t = self.times
        return tuple(  # type: ignore[return-value]
            0.0 if t[2 * i] is None else t[2 * i + 1] - t[2 * i] for i in range(3)
        )

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

    def _phase(self, rec: ClientRound, index: int, duration: float, offline_at: float) -> Generator:
        """Spend a phase's duration unless the client goes offline first; True if completed."""
        env = self.env
        start = env.now
        rec.times[2 * index] = start
        if start + duration > offline_at:
            yield env.timeout(offline_at - start)
            rec.times[2 * index + 1] = env.now
            rec.status, rec.phase = "interrupted", PHASES[index]
            return False
        yield env.timeout(duration)
        rec.times[2 * index + 1] = env.now
        return True

    def _client_round(self, client: int, round_index: int, dropped: bool) -> Generator:
        rec = ClientRound(round_index, client)
        if dropped:
            rec.status = "dropped"
            return rec
        w, env = self.world, self.env
        offline_at = w.availability.online_until(client, env.now)
        down = self.trainer.downlink_bytes(client)
        start = env.now
        if (
            yield from self._phase(
                rec, 0, w.downlinks.transfer_time(client, down, start), offline_at
            )
        ):
            rec.down_bytes = down
            result = self.trainer.train(client, round_index)
            compute = result.compute_seconds(w.fleet.flops[client])
            if (yield from self._phase(rec, 1, compute, offline_at)):
                up = result.uplink_bytes
                start = env.now
                if (
                    yield from self._phase(
                        rec, 2, w.uplinks.transfer_time(client, up, start), offline_at
                    )
                ):
                    rec.up_bytes = up
                    self.results[client] = result
                else:
                    rec.up_bytes = int(min(up, w.uplinks.delivered_bytes(client, start, env.now)))
        else:
            rec.down_bytes = int(min(down, w.downlinks.delivered_bytes(client, start, env.now)))
        rec.end = env.now
        rec.energy = w.fleet.energy_j(client, *rec.durations())
        return rec

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
        procs = [
            env.process(self._client_round(c, round_index, d))
            for c, d in zip(selected.tolist(), dropped, strict=True)
        ]
        yield env.all_of(procs)
        records: list[ClientRound] = [p.value for p in procs]
        received = [(r.client, self.results.pop(r.client)) for r in records if r.status == "ok"]
        self.results.clear()
        self.trainer.aggregate(round_index, received)
        return RoundOutcome(round_index, start, env.now, records, len(received))

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
        phase = "" if slowest is None else PHASES[int(np.argmax(slowest.durations()))]
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
            sum(c.up_bytes for c in self.clients),
            sum(c.down_bytes for c in self.clients),
            float(energies.mean()),
            float(energies.max()),
            "" if slowest is None else slowest.client,
            phase,
        )
