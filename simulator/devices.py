"""Devices: classes, per-client compute speed, energy, and availability over time.

Training speed is sustained training FLOP/s (what published training benchmarks of each
device class sustain, well below the peak). A class gives a [p10, p90] range in TFLOP/s; each
client draws its own speed inside it (lognormally, or by the scenario's device model), once,
from the "devices" seed stream. Compute time = work (FLOPs) / speed, so any
model's per-token cost maps to seconds the same way. Powers are defaults of the right order
(the paper's Jetson: 4 W compute, 2 W transmit); override them per class in the scenario.

Energy of a client-round = P_compute·T_compute + P_tx·T_upload + P_rx·T_download.
"""

from __future__ import annotations

import bisect
import csv
import heapq
import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np

from simulator import seeds
from simulator.errors import ScenarioError, TraceError, located
from simulator.registry import NoOptions, Registry
from simulator.scenario import (
    Availability,
    BernoulliAvailability,
    DeviceSpec,
    Population,
    SessionAvailability,
)

_Z90 = 1.2815515655446004  # standard normal quantile at 0.9


@dataclass(frozen=True)
class DeviceClass:
    name: str
    tflops: tuple[float, float]  # p10, p90 of sustained training TFLOP/s
    p_compute_w: float
    p_tx_w: float
    p_rx_w: float


CATALOGUE: dict[str, DeviceClass] = {
    c.name: c
    for c in (
        DeviceClass("low_phone", (0.01, 0.05), 2.0, 1.5, 1.0),
        DeviceClass("mid_phone", (0.03, 0.15), 3.0, 2.0, 1.2),
        DeviceClass("flagship_phone", (0.1, 0.5), 5.0, 2.0, 1.2),
        DeviceClass("jetson_orin_nano", (1.0, 5.0), 4.0, 2.0, 1.0),
        DeviceClass("jetson_agx_orin", (5.0, 15.0), 30.0, 2.0, 1.0),
        DeviceClass("laptop", (2.0, 10.0), 25.0, 1.5, 1.0),
    )
}


def resolve_classes(specs: dict[str, DeviceSpec], source: str) -> dict[str, DeviceClass]:
    """The catalogue with the scenario's overrides and new classes applied."""
    classes = dict(CATALOGUE)
    for name, spec in specs.items():
        given = {k: v for k, v in spec.model_dump().items() if v is not None}
        if name in classes:
            classes[name] = replace(classes[name], **given)
            continue
        missing = [f for f in ("tflops", "p_compute_w", "p_tx_w", "p_rx_w") if f not in given]
        if missing:
            raise ScenarioError(
                located(
                    source,
                    f"devices.{name}",
                    f"new device class lacks {', '.join(missing)}",
                    f"give them, or use a catalogue class: {', '.join(CATALOGUE)}",
                )
            )
        classes[name] = DeviceClass(name, **given)
    return classes


@dataclass(frozen=True)
class Fleet:
    """Every client's device as flat lists indexed by client id (memory O(clients)).

    Lists of Python floats, not numpy arrays: the engine reads one client at a time, where
    numpy scalars are several times slower.
    """

    classes: tuple[DeviceClass, ...]
    class_index: list[int]
    flops: list[float]  # sustained training FLOP/s per client
    p_compute_w: list[float]
    p_tx_w: list[float]
    p_rx_w: list[float]

    def class_names(self) -> list[str]:
        """The device class of every client, by client id."""
        names = [c.name for c in self.classes]
        return [names[i] for i in self.class_index]

    def energy_j(self, client: int, download_s: float, compute_s: float, upload_s: float) -> float:
        """Joules a client spends on one round's phases."""
        return (
            self.p_compute_w[client] * compute_s
            + self.p_tx_w[client] * upload_s
            + self.p_rx_w[client] * download_s
        )


def _counts(fractions: list[float], n: int) -> list[int]:
    """Largest-remainder apportionment of n clients to classes."""
    total = sum(fractions)
    exact = [f / total * n for f in fractions]
    counts = [math.floor(e) for e in exact]
    order = sorted(range(len(exact)), key=lambda i: (counts[i] - exact[i], i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


class LognormalSpeed:
    """Each client's sustained TFLOP/s drawn lognormally so that its class's [p10, p90] holds
    80 % of the clients (the default device model)."""

    def __init__(self, options: NoOptions) -> None:
        self.options = options

    def tflops(self, p10: np.ndarray, p90: np.ndarray, gen: np.random.Generator) -> np.ndarray:
        """Every client's speed from its class's p10 and p90 (arrays over clients)."""
        lo, hi = np.log(p10), np.log(p90)
        z = gen.standard_normal(len(p10))
        return np.exp((lo + hi) / 2 + z * (hi - lo) / (2 * _Z90))


# How a client's speed follows from its device class: `population.device_model` names a
# built-in or `package.module:Class` (with `device_model_options`), drawn from the "devices"
# seed stream.
DEVICE_MODELS = Registry(
    "device model",
    {"lognormal": f"{__name__}:LognormalSpeed"},
    ("tflops",),
    "simulator/devices.py",
)


def build_fleet(
    population: Population, specs: dict[str, DeviceSpec], seed: int, source: str
) -> Fleet:
    """Assign classes by the mix (exact counts, seeded shuffle) and draw each client's speed."""
    classes = resolve_classes(specs, source)
    unknown = [name for name in population.mix if name not in classes]
    if unknown:
        raise ScenarioError(
            located(
                source,
                f"population.mix.{unknown[0]}",
                "unknown device class",
                f"use one of {', '.join(classes)}, or define it under [devices.{unknown[0]}]",
            )
        )
    mix = sorted(population.mix.items())  # the order a mix is written in must not matter
    chosen = tuple(classes[name] for name, _ in mix)
    counts = _counts([fraction for _, fraction in mix], population.clients)
    index = np.repeat(np.arange(len(chosen)), counts)
    index = seeds.rng(seed, "population").permutation(index)
    p10 = np.array([c.tflops[0] for c in chosen])[index]
    p90 = np.array([c.tflops[1] for c in chosen])[index]
    model = DEVICE_MODELS.build(population.device_model, population.device_model_options)
    flops = model.tflops(p10, p90, seeds.rng(seed, "devices")) * 1e12

    def per_client(attr: str) -> list[float]:
        return np.array([getattr(c, attr) for c in chosen])[index].tolist()

    return Fleet(
        chosen,
        index.tolist(),
        flops.tolist(),
        per_client("p_compute_w"),
        per_client("p_tx_w"),
        per_client("p_rx_w"),
    )


# --- availability -------------------------------------------------------------------------


_SESSION_BLOCK = 64  # dwell times drawn at once when a generated timeline is extended


class _GeneratedSessions:
    """Alternating exponential online/offline periods per client, extended lazily."""

    def __init__(self, seed: int, mean_on: float, mean_off: float) -> None:
        self.seed, self.mean_on, self.mean_off = seed, mean_on, mean_off
        self._toggles: dict[int, tuple[list[float], bool, np.random.Generator]] = {}

    def _timeline(self, client: int, until: float) -> tuple[list[float], bool]:
        if client not in self._toggles:
            gen = seeds.rng(self.seed, "sessions", client)
            online = bool(gen.random() < self.mean_on / (self.mean_on + self.mean_off))
            first = gen.exponential(self.mean_on if online else self.mean_off)
            self._toggles[client] = ([first], online, gen)
        toggles, online, gen = self._toggles[client]
        while toggles[-1] <= until:
            # a block of dwell times at once: the same numbers, sums and order as drawing
            # gen.exponential(scale) one by one (scale times a standard exponential)
            index = np.arange(len(toggles), len(toggles) + _SESSION_BLOCK)
            scales = np.where(online == (index % 2 == 0), self.mean_on, self.mean_off)
            steps = gen.standard_exponential(_SESSION_BLOCK) * scales
            toggles.extend(np.cumsum(np.concatenate(([toggles[-1]], steps)))[1:].tolist())
        return toggles, online

    def online_until(self, client: int, t: float) -> float:
        toggles, online = self._timeline(client, t)
        passed = bisect.bisect_right(toggles, t)
        return toggles[passed] if online == (passed % 2 == 0) else t

    def session(self, client: int, t: float) -> tuple[float, float]:
        """The online interval [start, end) that holds t, or else the next one after t."""
        toggles, online = self._timeline(client, t)
        passed = bisect.bisect_right(toggles, t)
        if online == (passed % 2 == 0):
            return (toggles[passed - 1] if passed else 0.0), toggles[passed]
        self._timeline(client, toggles[passed])
        return toggles[passed], toggles[passed + 1]


class _FileSessions:
    """Online intervals from a CSV (client,start_s,end_s); looped with the latest end time."""

    def __init__(self, path: str, clients: int) -> None:
        self.path = path
        self.starts, self.ends = self._read(path)
        self.ids = sorted(self.starts)
        if self.ids[-1] >= clients:
            raise TraceError(
                located(
                    path,
                    f"client {self.ids[-1]}",
                    f"the population has {clients} clients (ids 0 to {clients - 1})",
                    "give rows only for client ids below population.clients",
                )
            )
        self.period = max(e[-1] for e in self.ends.values())

    def _key(self, client: int) -> int:
        """The file's client whose sessions a client follows: its own rows, else (documented)
        the file's ids in turn, ids[client % len(ids)]."""
        return client if client in self.starts else self.ids[client % len(self.ids)]

    def coverage(self, clients: int) -> str:
        """How the file's clients map onto the population, for validate to say."""
        own = len(self.ids)
        if own == clients:
            return f"sessions file: rows for all {clients} clients"
        return (
            f"sessions file: rows for {own} of {clients} clients; a client without rows "
            f"follows the file's (c mod {own})-th client in id order"
        )

    @staticmethod
    def _read(path: str) -> tuple[dict[int, list[float]], dict[int, list[float]]]:
        rows: dict[int, list[tuple[float, float]]] = {}
        try:
            with open(path, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                if not {"client", "start_s", "end_s"} <= set(reader.fieldnames or ()):
                    raise TraceError(
                        located(path, "header", "expected columns client,start_s,end_s")
                    )
                for line, row in enumerate(reader, start=2):
                    try:
                        client, start, end = (
                            int(row["client"]),
                            float(row["start_s"]),
                            float(row["end_s"]),
                        )
                    except (TypeError, ValueError):
                        raise TraceError(
                            located(
                                path,
                                f"line {line}",
                                f"non-numeric row {row}",
                                "use integer client ids and seconds",
                            )
                        ) from None
                    if not (0 <= start < end) or not math.isfinite(end):
                        raise TraceError(
                            located(
                                path,
                                f"line {line}",
                                f"bad interval [{start}, {end})",
                                "need 0 <= start_s < end_s",
                            )
                        )
                    rows.setdefault(client, []).append((start, end))
        except UnicodeDecodeError:
            raise TraceError(located(path, None, "not UTF-8 text")) from None
        if not rows:
            raise TraceError(
                located(path, None, "no session rows", "add client,start_s,end_s rows")
            )
        starts, ends = {}, {}
        for client, intervals in rows.items():
            intervals.sort()
            for (_, e0), (s1, _) in itertools.pairwise(intervals):
                if s1 < e0:
                    raise TraceError(located(path, f"client {client}", "overlapping intervals"))
            starts[client] = [s for s, _ in intervals]
            ends[client] = [e for _, e in intervals]
        return starts, ends

    def online_until(self, client: int, t: float) -> float:
        key = self._key(client)
        loop, local = divmod(t, self.period)
        i = bisect.bisect_right(self.starts[key], local) - 1
        if i >= 0 and local < self.ends[key][i]:
            return loop * self.period + self.ends[key][i]
        return t

    def session(self, client: int, t: float) -> tuple[float, float]:
        """The online interval [start, end) that holds t, or else the next one after t."""
        key = self._key(client)
        starts, ends = self.starts[key], self.ends[key]
        loop, local = divmod(t, self.period)
        i = bisect.bisect_right(starts, local) - 1
        if i < 0 or local >= ends[i]:
            i += 1
            if i == len(starts):
                loop, i = loop + 1, 0
        base = loop * self.period
        return base + starts[i], base + ends[i]


_SLACK_S = 1e-6  # session bounds computed by interval arithmetic may differ from a point test


class AvailabilityModel:
    """Who is online when, and who drops out of a round (common across method arms)."""

    def __init__(self, spec: Availability, seed: int, clients: int) -> None:
        self.seed = seed
        self.p_drop = (
            spec.p_drop if isinstance(spec, BernoulliAvailability | SessionAvailability) else 0.0
        )
        self.sessions: _GeneratedSessions | _FileSessions | None = None
        if isinstance(spec, SessionAvailability):
            self.sessions = (
                _FileSessions(spec.file, clients)
                if spec.file
                else _GeneratedSessions(seed, spec.mean_online_s, spec.mean_offline_s)
            )

    def online_until(self, client: int, t: float) -> float:
        """When the client's current online session ends (t if offline now, inf if always on)."""
        return math.inf if self.sessions is None else self.sessions.online_until(client, t)

    def first_online(
        self, clients: Iterable[int], times: Iterable[float], until: float
    ) -> tuple[int, float] | None:
        """(j, t) for the first t of the increasing `times` (the j-th, from 1) at which one of
        `clients` is online, or None when there is none up to `until`.

        What probing at every time in turn would find, without probing each: the clients'
        session intervals are merged in a heap, and only times inside one are tested, with the
        same point test as selection, so a long offline stretch costs nothing per client.
        """
        times = iter(times)
        j, t = 1, next(times)
        if self.sessions is None:
            return (j, t) if t <= until else None
        heap = [(*self.sessions.session(c, t), c) for c in clients]
        heapq.heapify(heap)
        while heap and t <= until:
            deferred = []
            while heap and heap[0][0] <= t + _SLACK_S:
                _, end, client = heapq.heappop(heap)
                if self.online_until(client, t) > t:
                    return j, t
                after = t if end > t + _SLACK_S else t + _SLACK_S
                deferred.append((*self.sessions.session(client, after), client))
            for item in deferred:
                heapq.heappush(heap, item)
            earliest = heap[0][0] - _SLACK_S if heap else math.inf
            j, t = j + 1, next(times)
            while t < earliest and t <= until:
                j, t = j + 1, next(times)
        return None

    def describe(self) -> str:
        """Who is online when, in a few words (for messages)."""
        if isinstance(self.sessions, _GeneratedSessions):
            on, off = self.sessions.mean_on, self.sessions.mean_off
            return f"generated sessions: {on:g} s online, {off:g} s offline on average"
        if isinstance(self.sessions, _FileSessions):
            return f"sessions file {self.sessions.path}"
        return "always online"

    def coverage(self, clients: int) -> str | None:
        """How a sessions file's clients map onto the population (None without a file)."""
        return self.sessions.coverage(clients) if isinstance(self.sessions, _FileSessions) else None

    def dropped(self, round_index: int, clients: np.ndarray) -> np.ndarray:
        """Which of these selected clients drop out of this round (Bernoulli p_drop)."""
        if self.p_drop == 0.0:
            return np.zeros(len(clients), dtype=bool)
        return seeds.uniforms(self.seed, "dropout", (round_index,), clients) < self.p_drop

    def dropped_one(self, key: int, client: int) -> bool:
        """Whether the client started under `key` drops out (FedBuff: one draw per start)."""
        return bool(self.dropped(key, np.array([client]))[0])
