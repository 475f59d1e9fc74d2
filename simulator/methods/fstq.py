"""Fed-FSTQ's update codec: Fisher-guided mixed-precision quantisation into a sparse message.

Algorithm (fed-fstq-paper.md §1d–1e, §2, §6):
- importance uⱼ = F̂ⱼ·Δθⱼ², with F̂ the diagonal Fisher EMA (ρ) of the adapter gradients from
  the client's own local steps (local.py; the token mask shapes it);
- bit-widths from B = {0, 2, 4, 16}: the top `fractions[0]` of coordinates by u get 16 bits, the
  next `fractions[1]` 4 bits, the next `fractions[2]` 2 bits, the rest are pruned (0 bits).
  Percentiles are global over all adapter coordinates of the client (REC 4);
- under a byte budget (a fixed `budget_bytes`, or the link-aware budget the trainer computes
  from the client's uplink), the fractions are lowered together, keeping their proportions,
  to the largest total that fits: every byte of the message counts (header, position blocks,
  tags, scales, values), so len(message) never exceeds a budget that the empty message fits;
- symmetric uniform quantiser per (LoRA group, bit-width): q_max(b) = 2^(b−1) − 1,
  s = max|Δθ| over the group's coordinates of that width / q_max, deterministic round to
  nearest (the paper: stochastic rounding gave negligible gains). INT2 is ternary {−1, 0, 1}·s,
  INT4 is {−7..7}·s; the 16-bit class is sent as fp16 without a scale (REC 6);
- the server dequantises; coordinates not sent are 0; aggregation is unchanged.
No error feedback (the faithful version has none).

Options beyond the paper, for testing *where* to compress at a matched budget (baselines.md
§4.2): `importance = "magnitude"` ranks by uⱼ = Δθⱼ² alone and `"random"` by a seeded random
order (the Fisher-free controls); `budget = "bits"` caps the message at `bits_per_param` bits
per adapter coordinate, everything included (so arms of different codecs compare at equal
bits); `allocation = "mass"` keeps the fewest top coordinates that hold sum(fractions) of the
total importance Σu (split among the widths in the fractions' proportions), so the message
size follows how concentrated the importance is instead of being fixed by the fractions.

Payload (after the frame header, see packing.py), in order:
    per group: its sent positions (encode_positions: bitmap or delta-coded, whichever is smaller)
    tags: 2 bits per sent coordinate in flat order: 0 → INT2, 1 → INT4, 2 → FP16 (3 is invalid)
    scales: fp32, per group in order: s(2) if the group has INT2 coordinates, then s(4) if INT4
    values: all INT2 codes (q + 1, 2 bits), then all INT4 codes (q + 7, 4 bits), then fp16
The per-coordinate loops (classify, tally, gather on the client; scatter on the server) are
compiled single-pass kernels (kernels.py), parallel over LoRA groups: a 10M-coordinate update
encodes and decodes in a few hundred milliseconds, not seconds.
Choices the paper leaves open, and why: fractions 5/20/35 % (the ablation's hint of ≈60 % of
coordinates kept at ≈4 bits on average, REC 4); fp32 scales (4 bytes against hundreds of
coordinates per group); class counts are exact (ties broken by position) so sizes are exact.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from simulator.errors import MessageError
from simulator.methods import kernels
from simulator.methods.base import CodecBase, CodecContext, Group, prepare
from simulator.methods.packing import (
    OVERHEAD,
    Reader,
    encode_positions,
    frame,
    pack_uint,
    packed_size,
    positions_size,
    unframe,
)

log = logging.getLogger(__name__)

SAMPLE = 1 << 17  # coordinates beyond which percentile thresholds are estimated on a sample

# A share of the coordinates (finite: a NaN fraction passed every sum check before).
Share = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]

# The link-aware budget's target upload time, at most a simulated day: `inf` crashed the first
# round (what an uplink delivers in infinite time is no byte count).
MAX_UPLOAD_S = 86_400.0


class FSTQOptions(BaseModel):
    """fractions: shares of coordinates at 16, 4 and 2 bits (by importance)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)  # `k = true` is no count

    fractions: Annotated[tuple[Share, Share, Share], Field(strict=False)] = (0.05, 0.20, 0.35)
    rho: float = Field(0.9, ge=0, lt=1, allow_inf_nan=False)
    budget: Literal["none", "bytes", "link", "bits"] = "none"
    budget_bytes: int | None = Field(None, gt=0)
    upload_s: float | None = Field(None, gt=0, le=MAX_UPLOAD_S, allow_inf_nan=False)
    bits_per_param: float | None = Field(None, gt=0, le=32, allow_inf_nan=False)
    importance: Literal["fisher", "magnitude", "random"] = "fisher"
    allocation: Literal["percentile", "mass"] = "percentile"

    @model_validator(mode="after")
    def _check(self) -> FSTQOptions:
        if any(f < 0 for f in self.fractions) or sum(self.fractions) > 1:
            raise ValueError(f"fractions {list(self.fractions)} must be >= 0 and sum to <= 1")
        if (self.budget == "bytes") != (self.budget_bytes is not None):
            raise ValueError("budget = 'bytes' and budget_bytes go together")
        if (self.budget == "link") != (self.upload_s is not None):
            raise ValueError("budget = 'link' and upload_s (target upload seconds) go together")
        if (self.budget == "bits") != (self.bits_per_param is not None):
            raise ValueError("budget = 'bits' and bits_per_param go together")
        return self


class FedFSTQ(CodecBase):
    """Fisher-guided {0, 2, 4, 16}-bit allocation, group-wise symmetric quantisation."""

    name = "fstq"
    codec_id = 6
    needs_fisher = True
    Options = FSTQOptions

    def __init__(self, options: FSTQOptions | None = None) -> None:
        self.options = options or FSTQOptions()
        self.fisher_rho = self.options.rho
        self.needs_fisher = self.options.importance == "fisher"  # the controls skip its cost

    def budget_for(self, capacity: Callable[[float], int]) -> int | None:
        """This round's byte cap: fixed, or (link-aware) what the client's uplink delivers in
        upload_s seconds from when it received the global state; None without a budget."""
        if self.options.budget == "bytes":
            return self.options.budget_bytes
        if self.options.budget == "link":
            return capacity(self.options.upload_s)
        return None

    # --- client side --------------------------------------------------------------------

    def encode(self, update: np.ndarray, context: CodecContext) -> bytes:
        """Allocate bits by importance (within the budget, if any) and pack the message."""
        update = prepare(update, context, ef=False)  # shape and finite values, as every codec
        classes = self.allocate(update, context)
        offsets = _offsets(context.groups, update.size)
        compiled = kernels.for_size(update.size)
        counts, peaks = compiled.tally(update, classes, offsets)
        parts = compiled.gather(update, classes, offsets, counts, peaks)
        return frame(self.codec_id, update.size, _pack(parts, context.groups))

    def allocate(self, update: np.ndarray, context: CodecContext) -> np.ndarray:
        """Bit class of every coordinate: 0 pruned, 1 INT2, 2 INT4, 3 FP16."""
        options, n = self.options, update.size
        weight = self._weight(context, n)
        budget = context.budget_bytes
        if options.budget == "bits":
            budget = int(options.bits_per_param * n / 8)
        if budget is None and options.allocation == "percentile" and weight is not None:
            thresholds, enabled = self._thresholds(update, weight, context.seed)
            return kernels.for_size(n).classify(update, weight, thresholds, enabled)
        if weight is None:
            order = np.random.default_rng(context.seed).permutation(n)
        else:
            order = np.argsort(-(weight * update * update), kind="stable")
        total = round(sum(options.fractions) * n)
        if options.allocation == "mass":
            total = _mass_count(update, weight, order, sum(options.fractions))
        if budget is not None:
            total = self._fit(update, order, total, budget, context.groups)
        return self._classes(order, total, n)

    def _weight(self, context: CodecContext, n: int) -> np.ndarray | None:
        """What multiplies Δθ² in the importance: F̂ (Fed-FSTQ), ones (magnitude), or None
        for a random order."""
        if self.options.importance == "random":
            return None
        if self.options.importance == "magnitude":
            return np.ones(n, dtype=np.float32)
        if context.fisher is None:
            raise ValueError("fstq needs context.fisher (the trainer estimates it)")
        return np.asarray(context.fisher, dtype=np.float32)

    def _thresholds(
        self, update: np.ndarray, fisher: np.ndarray, seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Percentile thresholds on u = F̂·Δθ² (kept at >= 2, >= 4, 16 bits) and which classes
        are on: exact up to SAMPLE coordinates, estimated on a seeded sample of SAMPLE beyond
        (a sort of 10M coordinates would cost more than the whole encoding)."""
        if update.size > SAMPLE:
            picks = np.random.default_rng(seed).integers(0, update.size, SAMPLE)
            update, fisher = update[picks], fisher[picks]
        sample = fisher * update * update
        f16, f4, f2 = self.options.fractions
        shares = np.array([f16 + f4 + f2, f16 + f4, f16])
        ranks = np.clip(np.ceil((1 - shares) * sample.size).astype(int), 0, sample.size - 1)
        return np.partition(sample, ranks)[ranks].astype(np.float32), shares > 0

    def _classes(self, order: np.ndarray, total: int, n: int) -> np.ndarray:
        """Per coordinate 0 (pruned) or 1 + tag, for `total` kept in the fractions' proportions."""
        f16, f4, f2 = self.options.fractions
        kept = f16 + f4 + f2
        k16 = int(total * f16 / kept) if kept else 0
        k4 = int(total * f4 / kept) if kept else 0
        classes = np.zeros(n, dtype=np.uint8)
        classes[order[:k16]] = 3
        classes[order[k16 : k16 + k4]] = 2
        classes[order[k16 + k4 : total]] = 1
        return classes

    def _fit(
        self,
        update: np.ndarray,
        order: np.ndarray,
        total: int,
        budget: int,
        groups: tuple[Group, ...],
    ) -> int:
        """The largest kept count whose message fits the budget (bisection; size is monotone)."""

        def fits(count: int) -> bool:
            return self.size(update, self._classes(order, count, update.size), groups) <= budget

        if fits(total):
            return total
        if not fits(0):
            log.warning("fstq: budget of %d bytes is below the empty message; sending it", budget)
            return 0
        low, high = 0, total  # fits(low), not fits(high)
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if fits(middle) else (low, middle)
        return low

    def size(self, update: np.ndarray, classes: np.ndarray, groups: tuple[Group, ...]) -> int:
        """len() of the message these classes give, without packing it."""
        offsets = _offsets(groups, update.size)
        compiled = kernels.for_size(update.size)
        sent, _, codes2, codes4, values16, counts, _ = compiled.gather(
            update, classes, offsets, *compiled.tally(update, classes, offsets)
        )
        bounds = _bounds(counts)
        blocks = sum(
            positions_size(sent[bounds[i] : bounds[i + 1]] - g.offset, g.size)
            for i, g in enumerate(groups)
        )
        return (
            OVERHEAD
            + blocks
            + packed_size(sent.size, 2)
            + 4 * int((counts[:, :2] > 0).sum())
            + packed_size(codes2.size, 2)
            + packed_size(codes4.size, 4)
            + 2 * values16.size
        )

    # --- server side --------------------------------------------------------------------

    def decode(self, message: bytes, context: CodecContext) -> np.ndarray:
        """Dequantise; unsent coordinates are 0. MessageError on any inconsistency."""
        groups = context.groups
        _, payload = unframe(message, self.codec_id, context.size)
        reader = Reader(payload)
        positions = [g.offset + reader.positions(g.size) for g in groups]
        sent = np.concatenate(positions)
        bounds = np.concatenate([[0], np.cumsum([p.size for p in positions])])
        tags = reader.uints(2, sent.size)
        counts = kernels.tag_counts(tags, bounds)
        if counts[:, 3].any():
            raise MessageError("fstq: invalid precision tag 3")
        present = counts[:, :2] > 0
        scale_values = np.frombuffer(reader.take(4 * int(present.sum())), dtype="<f4")
        if not np.isfinite(scale_values).all() or (scale_values < 0).any():
            raise MessageError("fstq: scales must be finite and non-negative")
        scales = np.zeros(present.shape, dtype=np.float32)
        scales[present] = scale_values
        codes2 = _padded(reader.uints(2, int(counts[:, 0].sum())), np.uint8)
        codes4 = _padded(reader.uints(4, int(counts[:, 1].sum())), np.uint8)
        halves = np.frombuffer(reader.take(2 * int(counts[:, 2].sum())), dtype="<f2")
        reader.done()
        halves = _padded(halves, np.float32)
        out, valid = kernels.for_size(context.size).scatter(
            context.size, sent, bounds, counts[:, :3], tags, codes2, codes4, halves, scales
        )
        if not valid:
            raise MessageError("fstq: a code out of range, or a non-finite value")
        return out


def _padded(values: np.ndarray, dtype: type) -> np.ndarray:
    """A copy with one zero element appended (the kernels read one slot past the end)."""
    out = np.zeros(values.size + 1, dtype=dtype)
    out[:-1] = values
    return out


def _pack(parts: tuple, groups: tuple[Group, ...]) -> bytes:
    """The payload from what kernels.gather returns."""
    sent, tags, codes2, codes4, values16, counts, scales = parts
    bounds = _bounds(counts)
    blocks = [
        encode_positions(sent[bounds[i] : bounds[i + 1]] - g.offset, g.size)
        for i, g in enumerate(groups)
    ]
    return b"".join(
        [
            *blocks,
            pack_uint(tags, 2),
            scales[counts[:, :2] > 0].astype("<f4").tobytes(),
            pack_uint(codes2, 2),
            pack_uint(codes4, 4),
            values16.astype("<f2").tobytes(),
        ]
    )


def _mass_count(
    update: np.ndarray, weight: np.ndarray | None, order: np.ndarray, mass: float
) -> int:
    """How many top coordinates (in `order`) hold `mass` of the total importance (a random
    order has none to follow: its share of coordinates is `mass`)."""
    if weight is None:
        return round(mass * update.size)
    ranked = (weight * update * update)[order].astype(np.float64)
    total = ranked.sum()
    if total <= 0:
        return 0
    return min(int(np.searchsorted(np.cumsum(ranked), mass * total) + 1), update.size)


def _offsets(groups: tuple[Group, ...], size: int) -> np.ndarray:
    """Group start offsets and the end of the vector."""
    return np.array([g.offset for g in groups] + [size], dtype=np.int64)


def _bounds(counts: np.ndarray) -> np.ndarray:
    """Where each group's run of sent coordinates starts (and the total at the end)."""
    return np.concatenate([[0], np.cumsum(counts.sum(axis=1))]).astype(np.int64)
