"""Client algorithms: what a client's local objective is, and what it keeps and sends besides
its update. Named per arm (`client = "scaffold"`, `client_options = { ... }`; a user's class as
`package.module:Class`, simulator/registry.py), built-ins in simulator/methods/registry.py.

- `fedavg`: plain local steps (McMahan et al. 2017), the default.
- `fedprox` (Li et al. 2020): the local objective is loss + μ/2·‖w − w_global‖² over the adapter
  coordinates; its gradient μ·(w − w_global) is added to each step's gradient.
- `scaffold` (Karimireddy et al. 2020), option II: a server control variate c and one per
  client, c_i (0 until the client first trains). Local steps use g − c_i + c; the client's new
  variate c_i⁺ is the mean of its K raw (uncorrected) step gradients; it uploads
  Δc_i = c_i⁺ − c_i beside its update and the server sets c ← c + (|S|/N)·mean(Δc_i) over the
  |S| updates it decoded, N the population (simulator/server/control.py). Under the paper's SGD
  with learning rate η, w_global − w_local = η·Σ(g_k − c_i + c), so its option II formula
  c_i − c + (w_global − w_local)/(K·η) is exactly that mean; it reuses the local steps' own
  gradients, so c_i costs no extra pass over the client's data (option I would compute a full
  local gradient at w_global: one more forward and backward over the shard).

The correction is applied to the gradient after backward and before clipping and the local
optimizer, which is AdamW here, not the SGD both papers analyse: AdamW rescales the corrected
gradient per coordinate, so FedProx's μ and SCAFFOLD's drift correction act through Adam's
normalisation. That is why c_i⁺ is taken from the gradients and not from the option II formula:
under AdamW, (w_global − w_local)/(K·η) is the mean Adam step per unit learning rate
(coordinates of order 1, not a gradient), and a correction of that size drowns the gradients
(measured: SCAFFOLD stayed at 0.24–0.28 accuracy on scenarios/client-algorithms.toml where
FedAvg reached 0.66). The diagonal Fisher a codec may ask for is estimated from the
uncorrected gradient (it describes the data loss).

Per-client state (c_i) travels in the job like a codec's error-feedback residual and is saved
in every checkpoint; the server's arrays (c) are broadcast with the global adapter through the
arm's downlink codec and checkpointed by the server model (simulator/server/model.py).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from simulator.registry import NoOptions
from simulator.server.control import control_update

Arrays = dict[str, np.ndarray]


class LocalRound(Protocol):
    """One client-round of a client algorithm, as local training sees it."""

    def correct(self) -> None:
        """Add the algorithm's term to every trainable tensor's `.grad` (after backward, before
        clipping and the optimizer step)."""

    def finish(self, delta: np.ndarray, steps: int) -> tuple[Arrays, Arrays]:
        """(the client's state to keep, the arrays it uploads beside its update, one per name in
        the algorithm's `shared`), from the round's delta w_local − w_global after `steps`."""


class ClientAlgorithm(Protocol):
    """A client's local objective and the state it carries; subclass FedAvg for the defaults."""

    shared: tuple[str, ...]  # server arrays (adapter-sized, zeros at first) broadcast each round

    def begin(
        self, params: list[torch.Tensor], state: Arrays, shared: Arrays, lr: float
    ) -> LocalRound:
        """The round's hooks, from the adapter's trainable tensors at w_global, the client's
        state, the decoded broadcast arrays and the local learning rate."""

    def server_update(self, shared: Arrays, uploads: list[Arrays], clients: int) -> Arrays:
        """The server arrays after a round that decoded `uploads` from a population of
        `clients` (numpy only)."""


class _PlainRound:
    """FedAvg's round: nothing to add, keep or send."""

    def correct(self) -> None:
        """Plain steps."""

    def finish(self, delta: np.ndarray, steps: int) -> tuple[Arrays, Arrays]:
        """Nothing kept or sent."""
        return {}, {}


class FedAvg:
    """Plain local steps: the result is bit-identical to training without an algorithm."""

    Options = NoOptions
    shared: tuple[str, ...] = ()

    def __init__(self, options: BaseModel | None = None) -> None:
        self.options = options

    def begin(
        self, params: list[torch.Tensor], state: Arrays, shared: Arrays, lr: float
    ) -> LocalRound:
        """No hooks."""
        return _PlainRound()

    def server_update(self, shared: Arrays, uploads: list[Arrays], clients: int) -> Arrays:
        """No server arrays."""
        return shared


class FedProxOptions(BaseModel):
    """mu: the proximal weight μ (Li et al. tune 0.001..1)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    mu: float = Field(0.01, gt=0, le=1e3, allow_inf_nan=False)


class _ProxRound(_PlainRound):
    def __init__(self, params: list[torch.Tensor], mu: float) -> None:
        self.params = params
        self.start = [p.detach().clone() for p in params]
        self.mu = mu

    def correct(self) -> None:
        """g ← g + μ·(w − w_global), the gradient of μ/2·‖w − w_global‖²."""
        with torch.no_grad():
            for param, start in zip(self.params, self.start, strict=True):
                param.grad.add_(param.detach() - start, alpha=self.mu)


class FedProx(FedAvg):
    """FedProx: a proximal term keeps local steps near the global adapter."""

    Options = FedProxOptions

    def __init__(self, options: FedProxOptions | None = None) -> None:
        self.options = options or FedProxOptions()

    def begin(
        self, params: list[torch.Tensor], state: Arrays, shared: Arrays, lr: float
    ) -> LocalRound:
        """Remember w_global."""
        return _ProxRound(params, self.options.mu)


CONTROL = "control"  # SCAFFOLD's variate: the server's c, the client's c_i (state) and Δc_i


class _ScaffoldRound:
    def __init__(self, params: list[torch.Tensor], own: np.ndarray, server: np.ndarray) -> None:
        self.params = params
        self.own = own
        correction = torch.from_numpy(server - own)
        sizes = [p.numel() for p in params]
        self.correction = [
            chunk.view(p.shape).to(device=p.device, dtype=p.dtype)
            for chunk, p in zip(torch.split(correction, sizes), params, strict=True)
        ]
        self.gradient_sum = [torch.zeros(p.shape, dtype=torch.float32) for p in params]

    def correct(self) -> None:
        """Add the raw gradient to the round's sum, then g ← g − c_i + c."""
        with torch.no_grad():
            for param, total, term in zip(
                self.params, self.gradient_sum, self.correction, strict=True
            ):
                total.add_(param.grad.detach().cpu())
                param.grad.add_(term)

    def finish(self, delta: np.ndarray, steps: int) -> tuple[Arrays, Arrays]:
        """c_i⁺ = the mean raw gradient of the round's `steps`; sends Δc_i = c_i⁺ − c_i."""
        total = torch.cat([t.reshape(-1) for t in self.gradient_sum]).numpy()
        updated = total / np.float32(steps)
        return {CONTROL: updated}, {CONTROL: updated - self.own}


class Scaffold(FedAvg):
    """SCAFFOLD, option II (see the module docstring)."""

    shared = (CONTROL,)

    def begin(
        self, params: list[torch.Tensor], state: Arrays, shared: Arrays, lr: float
    ) -> LocalRound:
        """c_i from the client's state (0 in its first round), c from the broadcast."""
        server = shared[CONTROL]
        own = state.get(CONTROL, np.zeros_like(server))
        return _ScaffoldRound(params, own, server)

    def server_update(self, shared: Arrays, uploads: list[Arrays], clients: int) -> Arrays:
        """c ← c + (|S|/N)·mean(Δc_i)."""
        deltas = [upload[CONTROL] for upload in uploads]
        return {CONTROL: control_update(shared[CONTROL], deltas, clients)}
