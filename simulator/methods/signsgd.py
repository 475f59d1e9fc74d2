"""EF-signSGD (Karimireddy et al. 2019): scaled sign per group, with error feedback.

Algorithm: p = update + residual (when `ef`); per group g of n_g coordinates the client sends
sgn(p_g) and the scale ‖p_g‖₁/n_g; the server decodes (‖p_g‖₁/n_g)·sgn(p_g), with sgn(0) = +1.
The new residual p − decoded(message) goes to `context.state["residual"]`; without `ef` nothing
is stored. The scale is per group (per LoRA matrix) rather than one for the whole vector, because
A and B matrices differ in magnitude; it costs 32 bits per group.

Payload (little-endian), flags 0:
    one fp32 scale per group, in layout order (the mean |p_g| computed in float64)
    n sign bits, one per flat coordinate, packed 8 per byte (bit 1 = non-negative)
The decoder requires finite, non-negative scales and the exact length.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict

from simulator.errors import MessageError
from simulator.methods.base import CodecBase, CodecContext, prepare
from simulator.methods.packing import Reader, frame, pack_uint, unframe


class SignSGDOptions(BaseModel):
    """Error feedback on (the EF-signSGD of the baselines) or off (plain scaled sign)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)  # `k = true` is no count

    ef: bool = True


def _scales(p: np.ndarray, context: CodecContext) -> np.ndarray:
    """Mean absolute value of each group (0 for an empty group), as fp32."""
    means = [
        np.abs(p[g.offset : g.offset + g.size]).mean(dtype=np.float64) if g.size else 0.0
        for g in context.groups
    ]
    return np.asarray(means, dtype="<f4")


def _expand(scales: np.ndarray, non_negative: np.ndarray, context: CodecContext) -> np.ndarray:
    """The decoded vector: each coordinate ± its group's scale."""
    magnitude = np.repeat(scales.astype(np.float32), [g.size for g in context.groups])
    return np.where(non_negative, magnitude, -magnitude)


class SignSGD(CodecBase):
    """One sign bit per coordinate and one fp32 scale per group."""

    name = "signsgd"
    codec_id = 5
    Options = SignSGDOptions

    def __init__(self, options: SignSGDOptions | None = None) -> None:
        self.options = options or SignSGDOptions()

    def encode(self, update: np.ndarray, context: CodecContext) -> bytes:
        """Scaled signs of update + residual; with ef the remainder becomes the residual."""
        p = prepare(update, context, self.options.ef)
        scales = _scales(p, context)
        non_negative = p >= 0
        if self.options.ef:
            context.state["residual"] = p - _expand(scales, non_negative, context)
        payload = scales.tobytes() + pack_uint(non_negative, 1)
        return frame(self.codec_id, context.size, payload)

    def decode(self, message: bytes, context: CodecContext) -> np.ndarray:
        """Each coordinate is its group's scale with the sent sign."""
        _, payload = unframe(message, self.codec_id, context.size)
        reader = Reader(payload)
        scales = np.frombuffer(reader.take(4 * len(context.groups)), dtype="<f4")
        non_negative = reader.uints(1, context.size).astype(bool)
        reader.done()
        if not np.isfinite(scales).all() or (scales < 0).any():
            raise MessageError("signsgd: group scales must be finite and non-negative")
        return _expand(scales, non_negative, context)
