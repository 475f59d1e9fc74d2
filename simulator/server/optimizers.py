"""Server optimizers: how the aggregated client update moves the global state.

The server model (model.py) averages the decoded client updates into Δ = Σₖ wₖΔₖ / Σₖ wₖ
(aggregation.py; the paper's Eq. server_agg) and hands Δ to the arm's server optimizer, which
treats it as a pseudo-gradient step (Reddi et al. 2021, "Adaptive Federated Optimization"):

- `fedavg`: x ← x + η·Δ (η = lr = 1 is plain FedAvg, the paper's server);
- `fedadam`: m ← β₁m + (1−β₁)Δ, v ← β₂v + (1−β₂)Δ², x ← x + η·m / (√v + τ);
- `fedyogi`: as fedadam with v ← v − (1−β₂)Δ²·sign(v − Δ²).

m and v start at 0 and are the optimizer's state: saved in every checkpoint and restored on
resume. A server optimizer is named per arm (`server_optimizer = "fedadam"`,
`server_optimizer_options = { lr = 0.01 }`); a user's class `package.module:Class` with the
same members works the same way (simulator/registry.py). numpy only.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from simulator.registry import Registry


class ServerOptimizer(Protocol):
    """Applies the aggregated update to the global state; keeps its own arrays."""

    def step(self, weights: np.ndarray, update: np.ndarray) -> np.ndarray:
        """The new global state from the current one and the aggregated update Δ."""

    def state(self) -> dict[str, np.ndarray]:
        """The arrays to checkpoint (empty when stateless)."""

    def load(self, state: dict[str, np.ndarray]) -> None:
        """Restore what state() returned."""


# Reddi et al. tune η and τ over 1e-3..1e1 and 1e-7..1e-1; beyond 1000 either is a typo or a
# unit error: a larger η turns the adapter into inf/NaN (a silent NaN loss), a larger τ freezes it.
MAX_SERVER_VALUE = 1e3

# Options are as strict as the scenario's own sections: unknown keys, booleans for numbers, NaN
# and infinities are errors when the scenario loads.
STRICT = ConfigDict(extra="forbid", frozen=True, strict=True)


class FedAvgOptions(BaseModel):
    """lr: the server learning rate η (1: the plain mean)."""

    model_config = STRICT

    lr: float = Field(1.0, gt=0, le=MAX_SERVER_VALUE, allow_inf_nan=False)


class FedAvg:
    """x ← x + η·Δ."""

    Options = FedAvgOptions

    def __init__(self, options: FedAvgOptions | None = None) -> None:
        self.options = options or FedAvgOptions()

    def step(self, weights: np.ndarray, update: np.ndarray) -> np.ndarray:
        """One step; η = 1 adds Δ itself (no rounding from the product)."""
        lr = self.options.lr
        return weights + (update if lr == 1.0 else np.float32(lr) * update)

    def state(self) -> dict[str, np.ndarray]:
        """Stateless."""
        return {}

    def load(self, state: dict[str, np.ndarray]) -> None:
        """Nothing to restore."""


class AdaptiveOptions(BaseModel):
    """lr = η, beta1 = β₁, beta2 = β₂, tau = τ (the adaptivity floor)."""

    model_config = STRICT

    lr: float = Field(0.01, gt=0, le=MAX_SERVER_VALUE, allow_inf_nan=False)
    beta1: float = Field(0.9, ge=0, lt=1, allow_inf_nan=False)
    beta2: float = Field(0.99, ge=0, lt=1, allow_inf_nan=False)
    tau: float = Field(1e-3, gt=0, le=MAX_SERVER_VALUE, allow_inf_nan=False)


class FedAdam:
    """Adam on the server's pseudo-gradient Δ (moments in float64)."""

    Options = AdaptiveOptions

    def __init__(self, options: AdaptiveOptions | None = None) -> None:
        self.options = options or AdaptiveOptions()
        self.m: np.ndarray | None = None
        self.v: np.ndarray | None = None

    def second_moment(self, v: np.ndarray, square: np.ndarray) -> np.ndarray:
        """Adam's v ← β₂v + (1−β₂)Δ²."""
        beta2 = self.options.beta2
        return beta2 * v + (1 - beta2) * square

    def step(self, weights: np.ndarray, update: np.ndarray) -> np.ndarray:
        """One adaptive step."""
        o = self.options
        delta = update.astype(np.float64)
        if self.m is None or self.v is None:
            self.m, self.v = np.zeros_like(delta), np.zeros_like(delta)
        self.m = o.beta1 * self.m + (1 - o.beta1) * delta
        self.v = self.second_moment(self.v, delta * delta)
        step = o.lr * self.m / (np.sqrt(self.v) + o.tau)
        return (weights + step).astype(np.float32)

    def state(self) -> dict[str, np.ndarray]:
        """The two moments (none before the first step)."""
        return {} if self.m is None or self.v is None else {"m": self.m, "v": self.v}

    def load(self, state: dict[str, np.ndarray]) -> None:
        """Restore the moments."""
        self.m, self.v = state.get("m"), state.get("v")


class FedYogi(FedAdam):
    """Yogi's additive second moment: v ← v − (1−β₂)Δ²·sign(v − Δ²)."""

    def second_moment(self, v: np.ndarray, square: np.ndarray) -> np.ndarray:
        """Yogi's v update (v grows at most additively, so rare large updates count longer)."""
        return v - (1 - self.options.beta2) * square * np.sign(v - square)


OPTIMIZERS = Registry(
    "server optimizer",
    {
        "fedavg": "simulator.server.optimizers:FedAvg",
        "fedadam": "simulator.server.optimizers:FedAdam",
        "fedyogi": "simulator.server.optimizers:FedYogi",
    },
    ("step", "state", "load"),
    "simulator/server/optimizers.py",
)
DEFAULT_OPTIMIZER = "fedavg"
