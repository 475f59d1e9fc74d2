"""Server strategies against stragglers: sync, deadline, over-selection and FedBuff.

A strategy is the server's policy, not its clock: it decides from what the engine planned, and
the engine (simulator/engine.py) keeps simulated time, moves the bytes and records. It imports
neither torch nor simpy, so every decision is a plain function of numbers, tested by hand in
tests/server/test_strategies.py.

Synchronous strategies (a round selects, trains, closes and aggregates) answer two questions:
how many clients to select (`cohort`) and, given each working client's planned finish (or
failure) time and whether its upload reaches the server, when the round closes, whom it stops
and whom it waited on (`close`). A client still working when the round closes is stopped then
with the strategy's `cut_status` (`late` or `cancelled`): the bytes it moved until then are
counted, its energy covers only that time, its update is discarded.

- sync: close at the last finish or failure; nobody is stopped.
- deadline: close deadline_s after the round's clients start, or at the percentile (nearest
  rank) of the planned arrival times of the clients whose upload reaches the server; earlier
  when everyone has finished or failed by then. The percentile is an oracle: the engine plans
  each client-round when it starts, so it knows the finish times a real server would predict
  from history.
- overselect: select ⌈n(1+ε)⌉, close at the n-th arrival (ties in selection order), cancel
  everyone else still working, and arrivals at that same instant after the n-th; with fewer
  than n arrivals the round closes like sync.

The straggler of a round (rounds.csv `slowest_client`, `slowest_phase`) is the client the round
waited on last: the last to finish or fail when nobody is stopped, the n-th arrival under
overselect, and, when a deadline stops clients, the stopped client planned to finish last
(the one farthest from done).

FedBuff (asynchronous, Nguyen et al. 2022) keeps `concurrency` clients training; each trains
on the global version it downloaded. Every arriving update is `s` versions stale (the server
updates since its download); updates staler than `max_staleness` are dropped (status
`stale`), the rest are buffered, and every `buffer_size` buffered updates make one server
update, weighting update k by n_k·w(s_k) / Σ n_j·w(s_j) with w(s) = 1/√(1+s) (normalised, so
the staleness weights shift the mix towards fresh updates without shrinking the step; the
FedBuff paper's 1/K-sum instead shrinks it). The event loop is the engine's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, NamedTuple

if TYPE_CHECKING:
    from simulator.scenario import Server


class Plan(NamedTuple):
    """A working client as the round's start planned it."""

    end: float  # when it finishes its upload, or fails
    arrives: bool  # whether its upload reaches the server


@dataclass(frozen=True)
class Closing:
    """A synchronous round's close: when, whom it stops (plan indices), whom it waited on."""

    time: float
    stopped: tuple[int, ...]
    straggler: int | None


def overselect_count(per_round: int, epsilon: float) -> int:
    """⌈n(1+ε)⌉, immune to float noise (10·1.3 is 13.000000000000002)."""
    return math.ceil(round(per_round * (1 + epsilon), 9))


def staleness_weight(staleness: int) -> float:
    """FedBuff's polynomial staleness discount 1/√(1+s)."""
    return 1.0 / math.sqrt(1.0 + staleness)


def _latest(plans: Sequence[Plan], among: Sequence[int]) -> int | None:
    """The index planned to end last (the first of equals), None when there is none."""
    return max(among, key=lambda i: plans[i].end, default=None)


def _wait_for_all(start: float, plans: Sequence[Plan]) -> Closing:
    """Close when the last client finishes or fails."""
    last = _latest(plans, range(len(plans)))
    return Closing(start if last is None else plans[last].end, (), last)


class Strategy:
    """What every strategy says: its name and how many clients train at once."""

    name: ClassVar[str]
    asynchronous: ClassVar[bool] = False

    def cohort(self, per_round: int) -> int:
        """Clients selected per round (synchronous) or kept in flight (asynchronous)."""
        return per_round


class RoundStrategy(Strategy):
    """A synchronous strategy: rounds close by `close`."""

    cut_status: ClassVar[str] = ""

    def close(self, start: float, plans: Sequence[Plan]) -> Closing:
        """When the round that started at `start` closes."""
        raise NotImplementedError


class Sync(RoundStrategy):
    """Wait for every selected client that did not drop out."""

    name = "sync"

    def close(self, start: float, plans: Sequence[Plan]) -> Closing:
        """At the last finish or failure."""
        return _wait_for_all(start, plans)


@dataclass(frozen=True)
class Deadline(RoundStrategy):
    """Close at a fixed deadline or a percentile of the planned arrival times."""

    deadline_s: float | None = None
    percentile: float | None = None
    name = "deadline"
    cut_status = "late"

    def cutoff(self, start: float, plans: Sequence[Plan]) -> float:
        """start + deadline_s, or the nearest-rank percentile of the arrival times (inf when
        nothing will arrive)."""
        if self.deadline_s is not None:
            return start + self.deadline_s
        arrivals = sorted(p.end for p in plans if p.arrives)
        if not arrivals:
            return math.inf
        assert self.percentile is not None
        rank = max(1, math.ceil(round(self.percentile / 100 * len(arrivals), 9)))
        return arrivals[rank - 1]

    def close(self, start: float, plans: Sequence[Plan]) -> Closing:
        """At the cut-off, or earlier when every client is done by then."""
        cutoff = self.cutoff(start, plans)
        stopped = tuple(i for i, p in enumerate(plans) if p.end > cutoff)
        if not stopped:
            return _wait_for_all(start, plans)
        return Closing(cutoff, stopped, _latest(plans, stopped))


@dataclass(frozen=True)
class OverSelect(RoundStrategy):
    """Select ⌈n(1+ε)⌉ and aggregate the first n arrivals."""

    epsilon: float
    per_round: int
    name = "overselect"
    cut_status = "cancelled"

    def cohort(self, per_round: int) -> int:
        """⌈n(1+ε)⌉."""
        return overselect_count(per_round, self.epsilon)

    def close(self, start: float, plans: Sequence[Plan]) -> Closing:
        """At the n-th arrival; everyone else still working, or arriving later, is cancelled."""
        arrivals = sorted((p.end, i) for i, p in enumerate(plans) if p.arrives)
        if len(arrivals) < self.per_round:
            return _wait_for_all(start, plans)
        time, nth = arrivals[self.per_round - 1]
        kept = {i for _, i in arrivals[: self.per_round]}
        stopped = tuple(
            i for i, p in enumerate(plans) if p.end > time or (p.arrives and i not in kept)
        )
        return Closing(time, stopped, nth)


@dataclass(frozen=True)
class FedBuff(Strategy):
    """Asynchronous buffered aggregation with staleness weights."""

    concurrency: int
    buffer_size: int
    max_staleness: int | None = None
    name = "fedbuff"
    asynchronous = True

    def cohort(self, per_round: int) -> int:
        """C clients in flight, whatever per_round says."""
        return self.concurrency

    def weight(self, staleness: int) -> float | None:
        """The weight factor of an update `staleness` versions old; None: too stale, dropped."""
        if self.max_staleness is not None and staleness > self.max_staleness:
            return None
        return staleness_weight(staleness)


STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (Sync, Deadline, OverSelect, FedBuff)
}


def make_strategy(server: Server, per_round: int) -> Strategy:
    """The strategy a scenario's [server] section names, with its parameters."""
    params = server.model_dump(exclude={"strategy", "rounds"})
    if server.strategy == "overselect":
        params["per_round"] = per_round
    return STRATEGIES[server.strategy](**params)
