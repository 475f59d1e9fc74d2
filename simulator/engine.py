"""The SimPy engine: a server process and the client-rounds it starts, on one simulated clock.

Per client-round: download the global state over the client's downlink, compute (the trainer
runs at the start of this phase in zero simulated time; the phase lasts the work divided by
the device speed), upload the message over the uplink. Links are deterministic functions of
time and clients do not contend, so a client-round is planned whole when it starts, to its
end (finish or failure), and the server waits on those planned ends instead of stepping
through phases. Clients started together download first and go to the trainer together
(`begin_round`), so an executor may train them in parallel; compute and upload are planned
after. A client whose online session ends mid-phase loses the round (status interrupted; the
phase and the bytes moved so far are recorded); a client that drops out (Bernoulli) sends
nothing and is noticed at once.

The server strategy (simulator/server/strategies.py) decides which of those ends the server
waits for and what happens to the rest:
- synchronous strategies run rounds: select, start (one SimPy timeout event per client-round,
  at its end), wait for the events of the clients the strategy waits on (under a deadline,
  until the deadline), stop those still working (late / cancelled, with the bytes and energy
  of the time they worked), aggregate;
- FedBuff keeps C client-rounds in flight and sleeps until the earliest planned end among
  them (one timeout per wake-up). Whenever some end, the server handles them in start order
  (failed, stale, or buffered with their staleness), updates the global state every K
  buffered updates (one round = one server update; its rows are the client-rounds that ended
  since the previous update), then refills the free slots with clients that are online and
  idle, each training on the version current when it starts. Clients are drawn
  one by one from the "selection" seed scope keyed by a start counter (which also keys their
  dropout, faults and training seeds), so every arm sees the same draws. When nobody can be
  started, the server looks again on a fixed 60 s grid. After the last update the clients
  still in flight are cancelled and reported in the last round.

While nobody is online the server looks again every 60 s; it jumps straight to the first look
that finds someone (what looking at each would find, at no cost per look). A run that cannot
progress stops with a StalledRunError instead of hanging: nobody online for MAX_WAIT_S of
simulated time, or FedBuff seeing MAX_FRUITLESS client-rounds in a row end without an update to
buffer (every upload lost, every client interrupted, every update stale).

This module imports no torch: the trainer is handed in.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import Counter
from collections.abc import Callable, Generator
from dataclasses import replace
from typing import Any

import simpy

from simulator.errors import StalledRunError
from simulator.network.faults import LOST
from simulator.network.link import LinkSet
from simulator.rounds import ClientRound, RoundOutcome
from simulator.scenario import Method
from simulator.server.selection import Selection
from simulator.server.strategies import FedBuff, Plan, RoundStrategy
from simulator.training.base import Trainer
from simulator.world import World

log = logging.getLogger(__name__)

NO_CLIENT_RETRY_S = 60.0  # when nobody can be started, the server looks again after this long
MAX_WAIT_S = 365 * 86_400.0  # nobody online for a simulated year: the run would never finish
MAX_FRUITLESS = 10_000  # FedBuff: client-rounds in a row without an update to buffer


def _partial(links: LinkSet, client: int, start: float, end: float, planned: int) -> int:
    """Whole bytes of a planned transfer started at start that had arrived by end (within a
    micro-byte of a whole number counts as it: the capacity integral carries float noise)."""
    return int(min(planned, links.delivered_bytes(client, start, end)) + 1e-6)


def _no_updates(fruitless: Counter[str], version: int) -> StalledRunError:
    counts = ", ".join(f"{status} {count:,}" for status, count in sorted(fruitless.items()))
    return StalledRunError(
        f"FedBuff: the last {fruitless.total():,} client-rounds all ended without an update to "
        f"buffer ({counts}), so server update {version} would never come. Fix: lower "
        "faults.drop or availability.p_drop, raise server.max_staleness, or lengthen the "
        "clients' online sessions"
    )


class Engine:
    """Runs one method arm over a World, reporting each round (server update) to a sink."""

    def __init__(
        self,
        world: World,
        method: Method,
        trainer: Trainer,
        status: Callable[[str], None] | None = None,
    ) -> None:
        self.world = world
        self.method = method
        self.trainer = trainer
        self.status = status or (lambda text: None)  # what the server waits for, for a human
        sc = world.scenario
        self.strategy = sc.server.build(sc.population.per_round)
        self.selection = Selection(world.availability, sc.seed, sc.population.clients)
        self.env = simpy.Environment()
        self.in_flight: dict[int, ClientRound] = {}  # FedBuff: started, not yet handled, by key
        self.next_key = 1  # FedBuff: the next start's counter

    # --- client side ----------------------------------------------------------------------

    def _download(self, rec: ClientRound, start: float) -> None:
        """Fix the download phase from start; a client offline before it ends is interrupted."""
        w, client = self.world, rec.client
        rec.offline_at = w.availability.online_until(client, start)
        down = self.trainer.downlink_bytes(client)
        end = start + w.downlinks.transfer_time(client, down, start)
        rec.down_bytes = down
        if not rec.phase_done(0, start, end, rec.offline_at):
            rec.down_bytes = _partial(w.downlinks, client, start, rec.offline_at, down)

    def _plan(self, rec: ClientRound) -> None:
        """Plan compute (the trainer's work, in zero simulated time) and upload after the
        download; rec.result is set when the update reaches the server."""
        w, client, offline_at = self.world, rec.client, rec.offline_at
        result = self.trainer.train(client, rec.key)
        start = rec.end
        end = start + result.compute_seconds(w.fleet.flops[client])
        if not rec.phase_done(1, start, end, offline_at):
            return
        rec.trained(result)
        up = rec.up_bytes = result.uplink_bytes
        start, end = end, end + w.uplinks.transfer_time(client, up, end)
        if not rec.phase_done(2, start, end, offline_at):
            rec.up_bytes = _partial(w.uplinks, client, start, offline_at, up)
            return
        received = w.faults.apply(rec.key, client, result.message)
        if received is None:
            rec.status = LOST
        else:
            rec.result = result if received is result.message else replace(result, message=received)

    def _start(self, records: list[ClientRound], dropped: list[bool], now: float) -> None:
        """Start these client-rounds at `now`, each planned whole to its end (rec.end)."""
        fleet = self.world.fleet
        for rec, drop in zip(records, dropped, strict=True):
            if drop:
                rec.status, rec.end = "dropped", now
            else:
                self._download(rec, now)
        ready = {r.client: r.end for r in records if r.status == "ok"}
        starts = [(r.client, r.key) for r in records if r.status == "ok"]
        self.status(f"training {len(starts)} clients at {now:.1f} s")
        self.trainer.begin_round(starts, self._uplink_capacity(ready))
        for rec in records:
            if rec.status == "ok":
                self._plan(rec)
            rec.energy = fleet.energy_j(rec.client, *rec.busy)

    def _stop(self, rec: ClientRound, t: float, status: str) -> None:
        """The server stops a client at t: one still working is cut there (the bytes it moved
        so far count, its energy covers only that time); one whose update has arrived sees it
        discarded; one that already failed or dropped out keeps its status."""
        if t >= rec.end:
            if rec.result is not None:
                rec.status, rec.result = status, None
            return
        rec.result = None
        ends = rec.times[1::2]
        index = next(i for i, end in enumerate(ends) if end is not None and t < end)
        start = rec.times[2 * index]
        assert start is not None
        rec.stop(index, t, status)
        w = self.world
        if index == 0:
            rec.down_bytes = _partial(w.downlinks, rec.client, start, t, rec.down_bytes)
        rec.up_bytes = 0 if index < 2 else _partial(w.uplinks, rec.client, start, t, rec.up_bytes)
        rec.energy = w.fleet.energy_j(rec.client, *rec.busy)

    def _uplink_capacity(self, ready: dict[int, float]) -> Callable[[int, float], int]:
        """Bytes a client's uplink delivers within `seconds` of receiving the global state.

        What a client can measure before it trains; a link-aware codec sizes its message by it.
        """
        uplinks = self.world.uplinks

        def capacity(client: int, seconds: float) -> int:
            start = ready[client]
            return int(uplinks.delivered_bytes(client, start, start + seconds))

        return capacity

    # --- server side ----------------------------------------------------------------------

    def _aggregate(
        self,
        round_index: int,
        span: tuple[float, float],
        records: list[ClientRound],
        straggler: ClientRound | None,
        weights: list[float] | None = None,
    ) -> RoundOutcome:
        """Fold the updates that arrived into the global state; rejected ones become corrupt."""
        arrived = [rec for rec in records if rec.result is not None]
        received = [(rec.client, rec.result) for rec in arrived]
        rejected = self.trainer.aggregate(round_index, received, weights)
        for index in rejected:
            arrived[index].status = "corrupt"
        for rec in arrived:
            rec.result = None
        accepted = len(arrived) - len(rejected)
        return RoundOutcome(round_index, *span, records, accepted, straggler)

    def _select(self, round_index: int, k: int) -> Generator:
        """k clients for this round; while nobody is online, look again every
        NO_CLIENT_RETRY_S (straight to the first look that finds someone)."""
        env, availability = self.env, self.world.availability
        n = self.world.scenario.population.clients
        while True:
            chosen = self.selection.cohort(round_index, env.now, k)
            if len(chosen):
                return chosen
            # the looks SimPy's clock would reach one timeout after another
            looks = itertools.accumulate(itertools.repeat(NO_CLIENT_RETRY_S), initial=env.now)
            next(looks)
            found = availability.first_online(range(n), looks, env.now + MAX_WAIT_S)
            if found is None:
                raise self._nobody_online(f"round {round_index}", env.now)
            count, when = found
            self._waiting(f"round {round_index}", env.now, when)
            for _ in range(count):
                yield env.timeout(NO_CLIENT_RETRY_S)

    def _waiting(self, what: str, now: float, when: float) -> None:
        text = f"{what}: nobody online at {now:.1f} s; someone is at {when:.1f} s"
        log.info(text)
        self.status(text)

    def _nobody_online(self, what: str, now: float) -> StalledRunError:
        days = MAX_WAIT_S / 86_400
        return StalledRunError(
            f"{what}: nobody came online in the {days:g} days of simulated time after "
            f"{now:.1f} s ({self.world.availability.describe()}), so the run would never "
            "finish. Fix: make clients online more often (availability.mean_online_s, "
            "mean_offline_s or the sessions file)"
        )

    def _rounds(self, first_round: int, on_round: Callable[[RoundOutcome], None]) -> Generator:
        """Synchronous rounds: select, start, close as the strategy says, aggregate."""
        env, w, sc = self.env, self.world, self.world.scenario
        strategy = self.strategy
        assert isinstance(strategy, RoundStrategy)
        for r in range(first_round, sc.server.rounds + 1):
            start = env.now
            selected = yield from self._select(r, strategy.cohort(sc.population.per_round))
            records = [ClientRound(r, c) for c in selected.tolist()]
            now = env.now
            self._start(records, w.availability.dropped(r, selected).tolist(), now)
            # one timeout event per client-round, at its end: a third of the cost of a process
            # per client-round, which matters at a million of them
            events = [env.timeout(rec.end - now, rec) for rec in records]
            working = [rec for rec in records if rec.status != "dropped"]
            closing = strategy.close(now, [Plan(c.end, c.result is not None) for c in working])
            heard = events  # the server hears from everyone, or those done by the close
            if closing.stopped:
                heard = [e for e, c in zip(events, records, strict=True) if c.end <= closing.time]
            yield env.all_of(heard)
            if closing.time > env.now:
                yield env.timeout(closing.time - env.now)  # a deadline with clients still out
            for index in closing.stopped:
                self._stop(working[index], closing.time, strategy.cut_status)
            straggler = None if closing.straggler is None else working[closing.straggler]
            on_round(self._aggregate(r, (start, env.now), records, straggler))

    def _buffered(self, first_round: int, on_round: Callable[[RoundOutcome], None]) -> Generator:
        """FedBuff: C client-rounds in flight, a server update every K buffered updates.

        The server sleeps until the earliest planned end in flight (or the next retry) and
        keeps that planned time as its clock `now`, so which client-rounds have ended never
        depends on float rounding in SimPy's clock, and a resumed run wakes when an unbroken
        one does.
        """
        env, rounds = self.env, self.world.scenario.server.rounds
        fedbuff = self.strategy
        assert isinstance(fedbuff, FedBuff)
        version, now = first_round - 1, env.now
        opened = now
        window: list[ClientRound] = []  # ended since the last server update
        fruitless: Counter[str] = Counter()  # ends since the last buffered update, by status
        while version < rounds:
            for key in [k for k, rec in self.in_flight.items() if rec.end <= now]:
                rec = self.in_flight.pop(key)
                rec.round = version + 1
                window.append(rec)
                if rec.result is not None:
                    rec.staleness = version - rec.version
                    if not fedbuff.receive(rec.staleness):
                        rec.status, rec.result = "stale", None
                if rec.result is None:
                    fruitless[rec.status] += 1
                    continue
                fruitless.clear()
                if not fedbuff.full():
                    continue
                version += 1
                if version == rounds:
                    for other in self.in_flight.values():
                        self._stop(other, now, "cancelled")
                        other.round = version
                    window += self.in_flight.values()
                    self.in_flight.clear()
                outcome = self._aggregate(version, (opened, now), window, rec, fedbuff.flush())
                window, opened = [], now
                on_round(outcome)
                if version == rounds:
                    return
            if fruitless.total() >= MAX_FRUITLESS:
                raise _no_updates(fruitless, version + 1)
            self._refill(version, now)
            ends = [rec.end for rec in self.in_flight.values()]
            if len(self.in_flight) < fedbuff.options.concurrency:
                ends.append(self._next_look(now, min(ends, default=now + MAX_WAIT_S)))
            wake = min(ends)
            yield env.timeout(max(0.0, wake - env.now))
            now = wake

    def _next_look(self, now: float, until: float) -> float:
        """FedBuff: the first time on the retry grid after now at which an idle client is
        online, or until (the next planned end) when that comes first."""
        n = self.world.scenario.population.clients
        busy = {rec.client for rec in self.in_flight.values()}
        idle = (c for c in range(n) if c not in busy)
        first = math.floor(now / NO_CLIENT_RETRY_S) + 1
        grid = (k * NO_CLIENT_RETRY_S for k in itertools.count(first))
        found = self.world.availability.first_online(idle, grid, until)
        if found is not None:
            self._waiting("FedBuff", now, found[1])
            return found[1]
        if not self.in_flight:
            raise self._nobody_online("FedBuff", now)
        return until

    def _refill(self, version: int, now: float) -> None:
        """Start online, idle clients on the current version until C are in flight."""
        w, population = self.world, self.world.scenario.population
        slots = self.strategy.cohort(population.per_round)
        busy = {rec.client for rec in self.in_flight.values()}
        records: list[ClientRound] = []
        while len(self.in_flight) + len(records) < slots:
            client = self.selection.one(self.next_key, now, busy)
            if client is None:
                break
            busy.add(client)
            records.append(ClientRound(self.next_key, client, version))
            self.next_key += 1
        if records:
            dropped = [w.availability.dropped_one(rec.key, rec.client) for rec in records]
            self._start(records, dropped, now)
            self.in_flight.update((rec.key, rec) for rec in records)

    def server_state(self) -> dict[str, Any]:
        """What the server must remember to resume after the last reported round: nothing for
        synchronous strategies; FedBuff's start counter and client-rounds in flight."""
        if not self.strategy.asynchronous:
            return {}
        return {
            "next_key": self.next_key,
            "in_flight": [rec.state() for rec in self.in_flight.values()],
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Load what server_state() returned."""
        if state:
            self.next_key = state["next_key"]
            records = [ClientRound.from_state(data) for data in state["in_flight"]]
            self.in_flight = {rec.key: rec for rec in records}

    def run(
        self, first_round: int, start_s: float, on_round: Callable[[RoundOutcome], None]
    ) -> None:
        """Simulate rounds first_round..R (1-based) from start_s, calling on_round after each."""
        self.env = simpy.Environment(initial_time=start_s)
        server = self._buffered if self.strategy.asynchronous else self._rounds
        self.env.process(server(first_round, on_round))
        self.env.run()
