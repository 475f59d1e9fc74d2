"""Top-k sparsification with error feedback (Stich et al. 2018; DGC-style, no momentum correction).

Algorithm: p = update + residual (the client's error-feedback memory, when `ef`); keep the k
largest |p| over the whole flat vector, ties broken by lower index so the choice does not depend
on numpy's selection algorithm; send those values as fp16 and their positions. The new residual
is p − decoded(message), so it also carries the fp16 rounding of the kept values; it is stored
in `context.state["residual"]` for the client's next round. Without `ef` nothing is stored.

k is `k` or round(ratio·n), at least 1 and at most n. Kept values beyond the fp16 range are
saturated to ±65504 (the excess stays in the residual), so a finite update always gives a message
the server accepts.

Payload (little-endian), flags 0:
    for each group in layout order: an `encode_positions` block of its kept positions
        (group-relative; the smaller of a bitmap and fixed-width gaps)
    k fp16 values, in increasing flat position order
The decoder requires exactly k positions in total and finite values.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from simulator.errors import MessageError
from simulator.methods.base import CodecBase, CodecContext, prepare
from simulator.methods.packing import Reader, encode_positions, frame, unframe

_FP16_MAX = float(np.finfo(np.float16).max)


class TopKOptions(BaseModel):
    """Give exactly one of `ratio` (fraction of coordinates kept) and `k` (count kept)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)  # `k = true` is no count

    ratio: float | None = Field(0.01, gt=0, le=1, allow_inf_nan=False)
    k: int | None = Field(None, ge=1)
    ef: bool = True

    @model_validator(mode="before")
    @classmethod
    def _k_replaces_default_ratio(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("k") is not None and "ratio" not in data:
            return {**data, "ratio": None}
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> TopKOptions:
        if (self.ratio is None) == (self.k is None):
            raise ValueError("give exactly one of 'ratio' and 'k'")
        return self


def top_positions(magnitude: np.ndarray, k: int) -> np.ndarray:
    """Sorted positions of the k largest values, ties going to the lower position."""
    n = magnitude.size
    if k >= n:
        return np.arange(n)
    threshold = np.partition(magnitude, n - k)[n - k]
    above = np.flatnonzero(magnitude > threshold)
    ties = np.flatnonzero(magnitude == threshold)[: k - above.size]
    return np.sort(np.concatenate([above, ties]))


class TopK(CodecBase):
    """The k largest-magnitude coordinates as fp16 values plus per-group position blocks."""

    name = "topk"
    codec_id = 4
    Options = TopKOptions

    def __init__(self, options: TopKOptions | None = None) -> None:
        self.options = options or TopKOptions()

    def kept(self, size: int) -> int:
        """How many coordinates a message for a vector of this size carries."""
        k = self.options.k if self.options.k is not None else round(self.options.ratio * size)
        return min(max(1, k), size)

    def encode(self, update: np.ndarray, context: CodecContext) -> bytes:
        """Select, send, and (with ef) keep what was not sent as the new residual."""
        p = prepare(update, context, self.options.ef)
        keep = top_positions(np.abs(p), self.kept(context.size))
        values = np.clip(p[keep], -_FP16_MAX, _FP16_MAX).astype("<f2")
        cuts = np.searchsorted(keep, [g.offset for g in context.groups] + [context.size])
        blocks = [
            encode_positions(keep[cuts[i] : cuts[i + 1]] - g.offset, g.size)
            for i, g in enumerate(context.groups)
        ]
        if self.options.ef:
            p[keep] -= values.astype(np.float32)
            context.state["residual"] = p
        return frame(self.codec_id, context.size, b"".join(blocks) + values.tobytes())

    def decode(self, message: bytes, context: CodecContext) -> np.ndarray:
        """Zeros except the sent positions, which hold the sent fp16 values exactly."""
        _, payload = unframe(message, self.codec_id, context.size)
        reader = Reader(payload)
        keep = np.concatenate(
            [reader.positions(g.size) + g.offset for g in context.groups], dtype=np.int64
        )
        expected = self.kept(context.size)
        if keep.size != expected:
            raise MessageError(f"topk: {keep.size} positions, expected k = {expected}")
        values = np.frombuffer(reader.take(2 * keep.size), dtype="<f2")
        reader.done()
        if not np.isfinite(values).all():
            raise MessageError("topk: non-finite values")
        decoded = np.zeros(context.size, dtype=np.float32)
        decoded[keep] = values
        return decoded
