"""Per-client links: which trace, what scale, what start offset; transfer time and bytes.

A LinkSet holds one direction for every client as arrays (trace index, capacity scale, start
offset), so memory stays O(clients) while traces are shared. A transfer first waits the
latency, then integrates the client's capacity curve. Loss is modelled as retransmission:
delivering n bytes over a link losing a fraction p of packets consumes n / (1 - p) bytes of
capacity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from simulator import seeds
from simulator.network import synthetic
from simulator.network.traces import Trace, load_trace
from simulator.scenario import (
    ConstantLink,
    LinkSpec,
    MarkovLink,
    Network,
    RatioLink,
    StragglerTailLink,
    TraceLink,
    UnlimitedLink,
)


@dataclass(frozen=True)
class LinkSet:
    """One direction (uplink or downlink) for every client."""

    traces: tuple[Trace, ...]  # empty for an unlimited link
    trace_index: list[int]  # lists, not arrays: read one client at a time on the hot path
    scale: list[float]
    offset_s: list[float]
    latency_s: float
    loss: float

    def transfer_time(self, client: int, nbytes: float, start_s: float) -> float:
        """Seconds to move nbytes to or from a client, starting at start_s (simulated)."""
        if not self.traces:
            return self.latency_s
        trace = self.traces[self.trace_index[client]]
        capacity_bytes = nbytes / (1.0 - self.loss) / self.scale[client]
        begin = start_s + self.latency_s + self.offset_s[client]
        return self.latency_s + trace.transfer_time(capacity_bytes, begin)

    def delivered_bytes(self, client: int, start_s: float, end_s: float) -> float:
        """Payload bytes a transfer started at start_s has delivered by end_s."""
        begin = start_s + self.latency_s
        if end_s <= begin:
            return 0.0
        if not self.traces:
            return math.inf
        trace = self.traces[self.trace_index[client]]
        offset = self.offset_s[client]
        raw = trace.delivered_bytes(begin + offset, end_s + offset)
        return raw * self.scale[client] * (1.0 - self.loss)

    def mean_bps_all(self) -> np.ndarray:
        """Long-run capacity of every client's link in bit/s (inf when unlimited)."""
        if not self.traces:
            return np.full(len(self.scale), np.inf)
        means = np.array([trace.mean_bps for trace in self.traces])
        return means[self.trace_index] * np.asarray(self.scale)

    def mean_bps(self, client: int) -> float:
        """Long-run capacity of a client's link in bit/s (inf when unlimited)."""
        if not self.traces:
            return math.inf
        return self.traces[self.trace_index[client]].mean_bps * self.scale[client]


def _uniform_offsets(
    gen: np.random.Generator, traces: list[Trace], index: np.ndarray
) -> np.ndarray:
    periods = np.array([t.duration_s for t in traces])[index]
    return gen.random(len(index)) * periods


def _load(spec: TraceLink) -> list[Trace]:
    return [load_trace(f, format=spec.format, **spec.options) for f in spec.files]


def _build(
    spec: LinkSpec, n: int, gen: np.random.Generator
) -> tuple[list[Trace], np.ndarray, np.ndarray]:
    """Traces, per-client trace index and per-client scale for one link spec."""
    ones = np.ones(n)
    zeros = np.zeros(n, dtype=np.int64)
    match spec:
        case UnlimitedLink():
            return [], zeros, ones
        case ConstantLink(mbps=mbps):
            return [synthetic.constant(mbps * synthetic.MBPS)], zeros, ones
        case StragglerTailLink():
            pool, means = synthetic.straggler_tail(spec, n, gen)
            return pool, gen.integers(0, len(pool), n), means
        case MarkovLink():
            pool = synthetic.markov(spec, gen)
            return pool, gen.integers(0, len(pool), n), ones
        case TraceLink():
            traces = _load(spec)
            index = (
                gen.integers(0, len(traces), n)
                if spec.assign == "random"
                else np.arange(n) % len(traces)
            )
            return traces, index, ones * spec.scale
    raise AssertionError(f"unhandled link kind {spec.kind}")


def _follows(spec: LinkSpec) -> bool:
    """Whether a direction is derived from the other (a ratio, or paired trace files)."""
    return isinstance(spec, RatioLink) or (isinstance(spec, TraceLink) and spec.assign == "paired")


def build_links(network: Network, n_clients: int, seed: int) -> tuple[LinkSet, LinkSet]:
    """Uplink and downlink sets for all clients; one may follow the other: a ratio of its
    capacity, or the paired file of each client's trace from the same start offset."""
    built: dict[str, LinkSet] = {}
    for direction, spec in (("uplink", network.uplink), ("downlink", network.downlink)):
        if _follows(spec):
            continue
        gen = seeds.rng(seed, "network", 0 if direction == "uplink" else 1)
        traces, index, scale = _build(spec, n_clients, gen)
        offsets = _uniform_offsets(gen, traces, index) if traces else np.zeros(n_clients)
        built[direction] = LinkSet(
            tuple(traces),
            index.tolist(),
            scale.tolist(),
            offsets.tolist(),
            network.latency_ms / 1e3,
            network.loss,
        )
    for direction, other in (("uplink", "downlink"), ("downlink", "uplink")):
        spec = getattr(network, direction)
        if isinstance(spec, RatioLink):
            base = built[other]
            built[direction] = replace(base, scale=[s * spec.ratio for s in base.scale])
        elif isinstance(spec, TraceLink) and spec.assign == "paired":
            traces = tuple(_load(spec))
            built[direction] = replace(built[other], traces=traces, scale=[spec.scale] * n_clients)
    return built["uplink"], built["downlink"]


def trace_files(network: Network) -> list[Path]:
    """Every trace file the network reads (for validation messages and the manifest)."""
    return [
        Path(f)
        for spec in (network.uplink, network.downlink)
        if isinstance(spec, TraceLink)
        for f in spec.files
    ]
