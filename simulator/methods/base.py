"""What a codec sees: the flat adapter layout, a seed, and per-client state kept outside it.

A codec turns a client's flat update into real bytes on the client (`encode`) and back into a
flat update on the server (`decode`). Codec objects hold no per-client state: anything that
persists across a client's rounds (e.g. an error-feedback residual) lives in `CodecContext.state`,
which the trainer stores per client, so one codec object serves every client and executor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class Group:
    """One named block of the flat vector (a LoRA matrix or a head tensor)."""

    name: str
    offset: int
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        """Number of coordinates."""
        return int(np.prod(self.shape))


@dataclass
class CodecContext:
    """What a codec may use besides the update itself.

    groups: the layout of the flat vector. seed: the client-round's seed (stochastic codecs
    draw only from it, so results do not depend on the executor). state: the client's own
    persistent state (e.g. an error-feedback residual under "residual"), which the codec reads
    and replaces and the trainer keeps per client. fisher: the diagonal Fisher estimate of the
    adapter coordinates from local training, for codecs whose class sets `needs_fisher`.
    budget_bytes: a cap on len(message) for budgeted codecs (None: no cap).
    """

    groups: tuple[Group, ...]
    seed: int = 0
    state: dict[str, np.ndarray] = field(default_factory=dict)
    fisher: np.ndarray | None = None
    budget_bytes: int | None = None

    @property
    def size(self) -> int:
        """Length of the flat vector."""
        last = self.groups[-1]
        return last.offset + last.size


class Codec(Protocol):
    """Client-side encode, server-side decode; `len(encode(...))` is the uplink size."""

    name: str
    codec_id: int  # written into every frame; unique among codecs (checked at load)
    needs_fisher: bool  # whether local training must estimate the diagonal Fisher
    fisher_rho: float | None  # that estimate's EMA factor ρ (None without one)

    def budget_for(self, capacity: Callable[[float], int]) -> int | None:
        """This client-round's cap on len(message), given capacity(seconds) = the bytes the
        client's uplink delivers within that many seconds of receiving the global state;
        None for no cap."""

    def encode(self, update: np.ndarray, context: CodecContext) -> bytes:
        """The message a client sends for this flat float32 update."""

    def decode(self, message: bytes, context: CodecContext) -> np.ndarray:
        """The flat float32 update a message carries; raises MessageError if malformed."""


class CodecBase:
    """Defaults for the Codec members most codecs share: no Fisher estimate, no budget."""

    needs_fisher: bool = False
    fisher_rho: float | None = None

    def budget_for(self, capacity: Callable[[float], int]) -> int | None:
        """No cap."""
        return None


class TokenHook(Protocol):
    """One client-round of a token policy, as local training sees it (simulator/training/
    local.py documents when each is called)."""

    def wants_scores(self, step: int) -> bool:
        """Whether this step must compute per-token losses and embedding-gradient scores."""

    def weights(self, step: int, batch: Any) -> Any:
        """Per-token loss weights [B, T] for this step, or None for all ones."""

    def observe(self, step: int, batch: Any, token_loss: Any, token_grad_sq: Any) -> None:
        """Per-token losses and squared embedding-gradient norms [B, T] of a scored step."""


class TokenPolicy(Protocol):
    """Which tokens a client learns from: a fresh hook per client-round."""

    def hook(self, vocab_size: int, special_ids: list[int], seed: int) -> TokenHook:
        """The hook of one client-round (its scores start afresh), seeded by the round."""


def prepare(update: np.ndarray, context: CodecContext, ef: bool) -> np.ndarray:
    """The vector a codec compresses: the checked update, plus the stored residual when ef.

    With ef the result is a fresh array the caller may overwrite; without, it may be the input.
    """
    x = np.asarray(update, dtype=np.float32)
    if x.shape != (context.size,):
        raise ValueError(f"update of shape {x.shape}; the layout has {context.size} coordinates")
    if not np.isfinite(x).all():
        raise ValueError("update holds non-finite values (did local training diverge?)")
    if not ef:
        return x
    residual = context.state.get("residual")
    if residual is None:
        return x.copy()
    if residual.shape != x.shape:
        raise ValueError(f"stored residual of shape {residual.shape}, update of {x.shape}")
    return x + residual
