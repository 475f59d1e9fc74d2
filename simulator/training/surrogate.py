"""Surrogate training: payload and compute per method, quality from a documented model.

No torch, no data: curves exist without training, and every output says `surrogate`.

Quality model (saturating exponential in effective rounds):
    progress_t = progress_{t-1} + efficiency_m · Σ_k samples_k · w_k /
                 (per_round · samples_per_client)
    q_t = ceiling - (ceiling - initial) · exp(-progress_t / tau_rounds)  (+ optional noise)
over the updates k aggregated in round t, with w_k the strategy's weight factor (1, or
FedBuff's staleness weight 1/√(1+s)). A full round with every selected client contributes
`efficiency_m` rounds of progress, so dropouts and stragglers cut by a strategy slow
convergence, a stale update is worth less than a fresh one (the modelled reason FedBuff
discounts it), and a method that loses quality (efficiency < 1) needs proportionally more
rounds. Noise, if any, is N(0, noise_sd) from the "quality" seed stream of the round, clipped
to [0, 1]; it never accumulates.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from simulator import seeds
from simulator.scenario import Method, Scenario
from simulator.training.base import LocalResult

MB = 1_000_000  # the paper's MB: 1 MB = 8 Mb on a link of the same base


class SurrogateTrainer:
    """Fixed per-method payload and compute, a quality curve driven by received samples."""

    mode = "surrogate"
    source = "surrogate"

    def __init__(self, scenario: Scenario, method: Method) -> None:
        self.training = scenario.training
        self.method = method
        self.seed = scenario.seed
        self.per_round = scenario.population.per_round
        if method.payload_mb is not None:
            self.payload = round(method.payload_mb * MB)
        else:
            self.payload = math.ceil(method.bits_per_param * self.training.adapter_params / 8)
        down_mb = self.training.downlink_mb if method.downlink_mb is None else method.downlink_mb
        self.down_bytes = round(down_mb * MB)
        self.progress = 0.0

    def downlink_bytes(self, client: int) -> int:
        """The same broadcast size for every client."""
        return self.down_bytes

    def begin_round(
        self, starts: list[tuple[int, int]], uplink: Callable[[int, float], int]
    ) -> None:
        """Nothing to prepare: results are fixed sizes and costs."""

    def train(self, client: int, round_index: int) -> LocalResult:
        """No math: the method's payload size and compute cost."""
        m = self.method
        work = None if m.compute_tflop is None else m.compute_tflop * 1e12
        return LocalResult(self.payload, self.training.samples_per_client, m.compute_s, work)

    def aggregate(
        self,
        round_index: int,
        received: list[tuple[int, LocalResult]],
        weights: list[float] | None = None,
    ) -> set[int]:
        """Advance progress by the (weighted) share of a full round's samples that arrived."""
        factors = [1.0] * len(received) if weights is None else weights
        samples = sum(r.num_samples * f for (_, r), f in zip(received, factors, strict=True))
        full = self.per_round * self.training.samples_per_client
        self.progress += self.method.efficiency * samples / full
        return set()

    def evaluate(self, round_index: int) -> dict[str, float]:
        """The modelled metric after the rounds aggregated so far."""
        t = self.training
        value = t.ceiling - (t.ceiling - t.initial) * math.exp(-self.progress / t.tau_rounds)
        if t.noise_sd > 0:
            noise = seeds.rng(self.seed, "quality", round_index).normal(0.0, t.noise_sd)
            value = min(1.0, max(0.0, value + noise))
        return {t.metric: value}

    def views(self) -> dict[str, dict[str, float]]:
        """None: a modelled quality has no groups or clients."""
        return {}

    def state(self) -> dict[str, Any]:
        """Only the accumulated progress."""
        return {"progress": self.progress}

    def restore(self, state: dict[str, Any]) -> None:
        """Resume from state()."""
        self.progress = float(state["progress"])

    def finish(self) -> None:
        """No artefacts: nothing was trained."""

    def host_seconds(self) -> dict[str, float]:
        """No model math."""
        return {}
