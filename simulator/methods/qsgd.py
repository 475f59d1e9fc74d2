"""QSGD (Alistarh et al. 2017): unbiased stochastic uniform quantization with bucket norms.

Algorithm: the flat update is cut into buckets; each group (LoRA matrix) is split into runs of
`bucket` coordinates (the last run of a group may be shorter; bucket = 0 makes each group one
bucket), so no bucket straddles two tensors of different scale. With s = 2^(bits−1) − 1 levels
and the bucket's ℓ2 norm ‖v‖, coordinate v_i becomes ‖v‖·sgn(v_i)·ξ_i/s, where ξ_i is
⌊s|v_i|/‖v‖⌋ rounded up with probability equal to the fractional part, so E[ξ_i/s] = |v_i|/‖v‖
(unbiased). Random numbers come only from `numpy.random.default_rng(context.seed)`. No error
feedback (FedPAQ is this quantizer plus τ local steps, which the trainer does).

Payload (little-endian), flags = bits (so a server configured with other bits rejects it):
    one fp32 norm per bucket, in flat order (computed in float64, so it is ≥ every |v_i|)
    one `bits`-bit code per coordinate, packed with `pack_uint`:
        bit bits−1 = sign (1 = negative), bits 0..bits−2 = level ξ_i in 0..s
The decoder requires the exact length and finite, non-negative norms. Every (bits−1)-bit level is
≤ s by construction of s, so no level can be out of range. The encoder never produces s + 1:
the squares of fp32 values are exact in float64 and rounding is monotone, so the fp32 norm is
≥ every |v_i|, hence s·|v_i|/‖v‖ ≤ s in float32 and only a non-integer is rounded up.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from simulator.errors import MessageError
from simulator.methods.base import CodecBase, CodecContext, Group, prepare
from simulator.methods.packing import Reader, frame, pack_uint, unframe

_FP32_MAX = float(np.finfo(np.float32).max)


class QSGDOptions(BaseModel):
    """bits = 1 sign bit + (bits − 1) level bits; bucket = coordinates per norm (0: per group)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)  # `k = true` is no count

    bits: int = Field(4, ge=2, le=16)
    bucket: int = Field(512, ge=0)


def buckets(groups: tuple[Group, ...], bucket: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, length) of every bucket, in flat order."""
    starts, lengths = [], []
    for g in groups:
        if g.size:
            step = bucket or g.size
            local = np.arange(0, g.size, step)
            starts.append(g.offset + local)
            lengths.append(np.minimum(step, g.size - local))
    if not starts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(starts), np.concatenate(lengths)


class QSGD(CodecBase):
    """Per-bucket fp32 norms and one sign+level code per coordinate."""

    name = "qsgd"
    codec_id = 3
    Options = QSGDOptions

    def __init__(self, options: QSGDOptions | None = None) -> None:
        self.options = options or QSGDOptions()
        self.bits = self.options.bits
        self.levels = 2 ** (self.bits - 1) - 1
        code = np.arange(2**self.bits)
        level = (code & self.levels).astype(np.float32) / np.float32(self.levels)
        self.table = np.where(code >> (self.bits - 1), -level, level).astype(np.float32)

    def encode(self, update: np.ndarray, context: CodecContext) -> bytes:
        """Bucket norms, then stochastically rounded levels with signs."""
        x = prepare(update, context, ef=False)
        starts, lengths = buckets(context.groups, self.options.bucket)
        norms = np.sqrt(np.add.reduceat(np.square(x, dtype=np.float64), starts))
        if (norms > _FP32_MAX).any():
            raise ValueError("qsgd: a bucket norm exceeds the fp32 range; the update is too large")
        norms = norms.astype(np.float32)
        per_coordinate = np.repeat(norms, lengths)
        # Dividing per coordinate (not multiplying by s/‖v‖) keeps subnormal norms finite.
        scaled = np.divide(
            np.abs(x), per_coordinate, out=np.zeros_like(x), where=per_coordinate > 0
        )
        scaled *= np.float32(self.levels)
        low = np.floor(scaled)
        up = np.random.default_rng(context.seed).random(x.size, dtype=np.float32) < scaled - low
        level = low.astype(np.uint16) + up
        codes = level | ((x < 0).astype(np.uint16) << (self.bits - 1))
        payload = norms.astype("<f4").tobytes() + pack_uint(codes, self.bits)
        return frame(self.codec_id, context.size, payload, flags=self.bits)

    def decode(self, message: bytes, context: CodecContext) -> np.ndarray:
        """Norm × signed level / s for every coordinate."""
        flags, payload = unframe(message, self.codec_id, context.size)
        if flags != self.bits:
            raise MessageError(f"qsgd: message of {flags} bits, this decoder reads {self.bits}")
        starts, lengths = buckets(context.groups, self.options.bucket)
        reader = Reader(payload)
        norms = np.frombuffer(reader.take(4 * starts.size), dtype="<f4")
        codes = reader.uints(self.bits, context.size)
        reader.done()
        if not np.isfinite(norms).all() or (norms < 0).any():
            raise MessageError("qsgd: bucket norms must be finite and non-negative")
        return self.table[codes] * np.repeat(norms, lengths)
