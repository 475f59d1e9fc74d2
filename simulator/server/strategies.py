"""Server strategies against stragglers: sync, deadline, over-selection and FedBuff.

A strategy is the server's policy, not its clock: it decides from what the engine planned, and
the engine (simulator/engine.py) keeps simulated time, moves the bytes and records. It imports
neither torch nor simpy, so every decision is a plain function of numbers, tested by hand in
tests/server/test_strategies.py.

The lifecycle of a round, in the style of Flower's strategies (each step one method):
select (`cohort`: how many clients; selection.py draws them) → configure (the clients train on
the current global version) → accept or stop each arrival (`close` for a synchronous round;
`receive` for FedBuff's buffer) → aggregate with weights (`flush`: FedBuff's staleness
weights; synchronous rounds weight by samples alone) → decide evaluation (`evaluates`).

Strategies are an extension point like codecs (simulator/registry.py): the scenario's
`[server] strategy` is a built-in name or `package.module:Class`, and the section's other keys
(except `rounds`) are the options, validated by the class's own pydantic `Options` when the
scenario loads. A class takes its options (and the population's per_round) when built, and
checks them against the population (`check`).

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
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator

from simulator.registry import NoOptions, Registry, validate_options

DEFAULT_STRATEGY = "sync"


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


MAX_EPSILON = 1e7  # selecting more than 1e7 × per_round exceeds any population


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
    """What every strategy says: its name, its options, how many clients train at once and
    when the server evaluates.

    Built from its validated `Options` (or, for convenience, the options' fields as keywords:
    `Deadline(deadline_s=30)`) and the population's per_round.
    """

    name: ClassVar[str]
    asynchronous: ClassVar[bool] = False
    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, options: BaseModel | None = None, per_round: int = 1, **fields: Any):
        self.options = options if options is not None else self.Options(**fields)
        self.per_round = per_round

    def cohort(self, per_round: int) -> int:
        """Clients selected per round (synchronous) or kept in flight (asynchronous)."""
        return per_round

    def check(self, clients: int) -> None:
        """ValueError when the options cannot work with this many clients."""

    def evaluates(self, round_index: int, every: int, rounds: int) -> bool:
        """Whether the server evaluates the global state after this round: every E rounds and
        after the last."""
        return round_index % every == 0 or round_index == rounds


class RoundStrategy(Strategy):
    """A synchronous strategy: rounds close by `close`."""

    cut_status: ClassVar[str] = ""

    @abstractmethod
    def close(self, start: float, plans: Sequence[Plan]) -> Closing:
        """When the round that started at `start` closes."""


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)  # `deadline_s = true`


class Sync(RoundStrategy):
    """Wait for every selected client that did not drop out."""

    name = "sync"

    def close(self, start: float, plans: Sequence[Plan]) -> Closing:
        """At the last finish or failure."""
        return _wait_for_all(start, plans)


class DeadlineOptions(_Options):
    """Exactly one of deadline_s (seconds after the round starts) or percentile (of the
    planned arrival times)."""

    deadline_s: float | None = None
    percentile: float | None = None

    @field_validator("deadline_s")
    @classmethod
    def _positive_deadline(cls, value: float | None) -> float | None:
        if value is not None and not 0 < value < math.inf:
            raise ValueError(
                "deadline_s must be a positive number of seconds; give the round's length, "
                "e.g. deadline_s = 600"
            )
        return value

    @field_validator("percentile")
    @classmethod
    def _percent(cls, value: float | None) -> float | None:
        if value is not None and not 0 < value <= 100:
            raise ValueError("percentile must be in (0, 100], e.g. percentile = 80")
        return value

    @model_validator(mode="after")
    def _check(self) -> DeadlineOptions:
        if (self.deadline_s is None) == (self.percentile is None):
            raise ValueError(
                "strategy 'deadline' needs exactly one of deadline_s (seconds after the round "
                "starts) or percentile (of the planned finish times); give one of them"
            )
        return self


class Deadline(RoundStrategy):
    """Close at a fixed deadline or a percentile of the planned arrival times."""

    name = "deadline"
    cut_status = "late"
    Options = DeadlineOptions

    def cutoff(self, start: float, plans: Sequence[Plan]) -> float:
        """start + deadline_s, or the nearest-rank percentile of the arrival times (inf when
        nothing will arrive)."""
        if self.options.deadline_s is not None:
            return start + self.options.deadline_s
        arrivals = sorted(p.end for p in plans if p.arrives)
        if not arrivals:
            return math.inf
        assert self.options.percentile is not None
        rank = max(1, math.ceil(round(self.options.percentile / 100 * len(arrivals), 9)))
        return arrivals[rank - 1]

    def close(self, start: float, plans: Sequence[Plan]) -> Closing:
        """At the cut-off, or earlier when every client is done by then."""
        cutoff = self.cutoff(start, plans)
        stopped = tuple(i for i, p in enumerate(plans) if p.end > cutoff)
        if not stopped:
            return _wait_for_all(start, plans)
        return Closing(cutoff, stopped, _latest(plans, stopped))


class OverSelectOptions(_Options):
    """epsilon: the fraction of extra clients selected."""

    epsilon: float

    @field_validator("epsilon")
    @classmethod
    def _non_negative(cls, value: float) -> float:
        if not 0 <= value <= MAX_EPSILON:
            raise ValueError(
                f"epsilon must be in [0, {MAX_EPSILON:g}] (the fraction of extra clients "
                "selected), e.g. 0.3"
            )
        return value


class OverSelect(RoundStrategy):
    """Select ⌈n(1+ε)⌉ and aggregate the first n arrivals."""

    name = "overselect"
    cut_status = "cancelled"
    Options = OverSelectOptions

    def cohort(self, per_round: int) -> int:
        """⌈n(1+ε)⌉."""
        return overselect_count(per_round, self.options.epsilon)

    def check(self, clients: int) -> None:
        """It cannot select more clients than there are."""
        selected = self.cohort(self.per_round)
        if selected > clients:
            raise ValueError(
                f"server.epsilon = {self.options.epsilon} selects {selected} clients per round, "
                f"more than population.clients ({clients}); lower epsilon or per_round"
            )

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


class FedBuffOptions(_Options):
    """concurrency C clients in flight; a server update every buffer_size K received updates;
    updates older than max_staleness versions dropped (none: keep all)."""

    concurrency: int
    buffer_size: int
    max_staleness: int | None = None

    @field_validator("concurrency", "buffer_size")
    @classmethod
    def _count(cls, value: int, info: ValidationInfo) -> int:
        if value < 1:
            raise ValueError(f"{info.field_name} must be a positive number of clients, e.g. 10")
        return value

    @field_validator("max_staleness")
    @classmethod
    def _bound(cls, value: int | None) -> int | None:
        if value is not None and value < 0:
            raise ValueError(
                "max_staleness must be >= 0 versions (0 keeps only fresh updates), or left out "
                "to keep every update"
            )
        return value

    @model_validator(mode="after")
    def _check(self) -> FedBuffOptions:
        if self.buffer_size > self.concurrency:
            raise ValueError(
                f"buffer_size (K = {self.buffer_size}) exceeds concurrency "
                f"(C = {self.concurrency}): the server could wait on more updates than clients "
                "train at once; lower buffer_size or raise concurrency"
            )
        return self


class FedBuff(Strategy):
    """Asynchronous buffered aggregation with staleness weights; the buffer is the strategy's
    (the staleness weights of the updates received since the last server update)."""

    name = "fedbuff"
    asynchronous = True
    Options = FedBuffOptions

    def __init__(self, options: BaseModel | None = None, per_round: int = 1, **fields: Any):
        super().__init__(options, per_round, **fields)
        self.buffer: list[float] = []

    def cohort(self, per_round: int) -> int:
        """C clients in flight, whatever per_round says."""
        return self.options.concurrency

    def check(self, clients: int) -> None:
        """It cannot keep more clients in flight than there are."""
        if self.options.concurrency > clients:
            raise ValueError(
                f"server.concurrency ({self.options.concurrency}) exceeds population.clients "
                f"({clients}); lower concurrency"
            )

    def weight(self, staleness: int) -> float | None:
        """The weight factor of an update `staleness` versions old; None: too stale, dropped."""
        if self.options.max_staleness is not None and staleness > self.options.max_staleness:
            return None
        return staleness_weight(staleness)

    def receive(self, staleness: int) -> bool:
        """Accept an arrival into the buffer (True) or refuse it as stale (False)."""
        weight = self.weight(staleness)
        if weight is None:
            return False
        self.buffer.append(weight)
        return True

    def full(self) -> bool:
        """Whether the buffer holds K updates: time for a server update."""
        return len(self.buffer) >= self.options.buffer_size

    def flush(self) -> list[float]:
        """The buffered updates' weight factors (in arrival order), emptying the buffer."""
        weights, self.buffer = self.buffer, []
        return weights


def _engine_gaps(cls: type) -> list[str]:
    """The engine drives a synchronous strategy as a RoundStrategy (`close`, `cut_status`)
    and an asynchronous one through FedBuff's buffer (`receive`, `full`, `flush`)."""
    base = FedBuff if getattr(cls, "asynchronous", False) else RoundStrategy
    return [] if issubclass(cls, base) else [f"{base.__name__} as a base class"]


STRATEGIES = Registry(
    "strategy",
    {cls.name: f"{__name__}:{cls.__name__}" for cls in (Sync, Deadline, OverSelect, FedBuff)},
    ("name", "asynchronous", "cohort", "check", "evaluates"),
    "simulator/server/strategies.py",
    _engine_gaps,
)


def make_strategy(name: str, options: dict[str, Any], per_round: int) -> Strategy:
    """The strategy a scenario's [server] section names, with its options."""
    cls = STRATEGIES.resolve(name)
    return cls(validate_options(cls, options), per_round)
