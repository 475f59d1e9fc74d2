"""Compiled single-pass kernels for the Fed-FSTQ codec (numba).

Each kernel replaces a dozen vectorised numpy passes over a 10M-coordinate update with one or
two loops, which is what it takes to encode and decode at tens of millions of coordinates per
second on a CPU. They hold no policy: fstq.py decides what to send and defines the format;
these only classify, gather and scatter. Each of the four main kernels comes compiled twice
(`Kernels`): serially (for ordinary adapters) and parallel over LoRA groups (for updates of a
million coordinates and more, where it pays for the threads). Every compilation is cached on
disk (numba's cache beside this file or in NUMBA_CACHE_DIR), so only the first process after an
install or an upgrade pays for it: bench/coldstart.py measures the difference.
"""

from __future__ import annotations

import types

import numpy as np
from numba import njit, prange

QMAX2, QMAX4 = 1, 7
PAD_SPACING = 128  # elements between groups' pad slots: over a cache line apart


@njit(cache=True)
def _class_of(u, t0, t1, t2, e0, e1, e2):  # pragma: no cover - compiled
    """0 pruned, else the number of enabled thresholds u reaches (comparisons as integers:
    on random importances a branch per threshold would be mispredicted half the time)."""
    c = e0 * np.uint8(u >= t0) + e1 * np.uint8(u >= t1) + e2 * np.uint8(u >= t2)
    return c * np.uint8(u > 0)


def _classify(update, fisher, thresholds, enabled):  # pragma: no cover - compiled
    """Class of every coordinate by its importance u = F̂·Δθ² against the thresholds."""
    t0, t1, t2 = thresholds[0], thresholds[1], thresholds[2]
    e0, e1, e2 = np.uint8(enabled[0]), np.uint8(enabled[1]), np.uint8(enabled[2])
    classes = np.empty(update.size, np.uint8)
    for j in prange(update.size):
        x = update[j]
        classes[j] = _class_of(fisher[j] * x * x, t0, t1, t2, e0, e1, e2)
    return classes


def _tally(update, classes, offsets):  # pragma: no cover - compiled
    """Per group: how many coordinates of each class [G, 4], and the largest |Δθ| of each."""
    groups = offsets.size - 1
    counts = np.zeros((groups, 4), np.int64)
    peaks = np.zeros((groups, 4), np.float32)
    for g in prange(groups):
        n1 = n2 = n3 = 0
        p1 = p2 = np.float32(0.0)
        for j in range(offsets[g], offsets[g + 1]):
            c = classes[j]
            a = abs(update[j])
            n1 += c == 1
            n2 += c == 2
            n3 += c == 3
            p1 = max(p1, a if c == 1 else np.float32(0.0))
            p2 = max(p2, a if c == 2 else np.float32(0.0))
        counts[g, 1], counts[g, 2], counts[g, 3] = n1, n2, n3
        counts[g, 0] = offsets[g + 1] - offsets[g] - n1 - n2 - n3
        peaks[g, 1], peaks[g, 2] = p1, p2
    return counts, peaks


@njit(cache=True)
def _starts(counts):  # pragma: no cover - compiled
    """[G + 1, 4] where each group's run starts in (all sent, INT2, INT4, FP16) order."""
    starts = np.zeros((counts.shape[0] + 1, 4), np.int64)
    for g in range(counts.shape[0]):
        starts[g + 1, 0] = starts[g, 0] + counts[g, 0] + counts[g, 1] + counts[g, 2]
        for t in range(3):
            starts[g + 1, t + 1] = starts[g, t + 1] + counts[g, t]
    return starts


@njit(cache=True)
def _gather_group(
    update, classes, begin, end, start, pad, inverse, sent, tags, codes2, codes4, values16
):  # pragma: no cover - compiled
    """One group's part of gather (a function of its own, so its cursors are private)."""
    k, k2, k4, k16 = start[0], start[1], start[2], start[3]
    i2, i4 = inverse[0], inverse[1]
    for j in range(begin, end):
        c = classes[j]
        x = update[j]
        at = k if c > 0 else pad[0]
        sent[at] = j
        tags[at] = c - 1
        k += c > 0
        codes2[k2 if c == 1 else pad[1]] = np.uint8(
            min(max(np.rint(x * i2), -QMAX2), QMAX2) + QMAX2
        )
        k2 += c == 1
        codes4[k4 if c == 2 else pad[2]] = np.uint8(
            min(max(np.rint(x * i4), -QMAX4), QMAX4) + QMAX4
        )
        k4 += c == 2
        values16[k16 if c == 3 else pad[3]] = x
        k16 += c == 3


def _gather(update, classes, offsets, counts, peaks):  # pragma: no cover - compiled
    """Everything the message carries, in flat order.

    Returns (sent positions, tags, INT2 codes, INT4 codes, fp16-class values (as float32),
    per-group tag counts [G, 3], per-group scales [G, 2]). Compaction is branch-free: every
    coordinate is written, to its slot when it belongs there (the cursor then advances), else
    to the group's pad slot past the end, which nobody reads; groups run in parallel on
    disjoint slices, their pads PAD_SPACING elements apart so threads never share a cache line.
    """
    groups = offsets.size - 1
    inverse = np.zeros((groups, 2), np.float32)
    scales = np.empty((groups, 2), np.float32)
    for g in range(groups):
        scales[g, 0] = peaks[g, 1] / QMAX2
        scales[g, 1] = peaks[g, 2] / QMAX4
        for t in range(2):
            if scales[g, t] > 0:
                inverse[g, t] = 1.0 / scales[g, t]
    starts = _starts(counts[:, 1:])
    total = starts[-1]
    room = PAD_SPACING * groups
    sent = np.empty(total[0] + room, np.int64)
    tags = np.empty(sent.size, np.uint8)
    codes2 = np.empty(total[1] + room, np.uint8)
    codes4 = np.empty(total[2] + room, np.uint8)
    values16 = np.empty(total[3] + room, np.float32)
    for g in prange(groups):  # each group writes its own slices and its own pad slots
        _gather_group(
            update,
            classes,
            offsets[g],
            offsets[g + 1],
            starts[g],
            total + PAD_SPACING * g,
            inverse[g],
            sent,
            tags,
            codes2,
            codes4,
            values16,
        )
    k, k2, k4, k16 = total[0], total[1], total[2], total[3]
    return sent[:k], tags[:k], codes2[:k2], codes4[:k4], values16[:k16], counts[:, 1:], scales


@njit(cache=True)
def _scatter_group(
    out, sent, begin, end, start, tags, codes2, codes4, values16, scales
):  # pragma: no cover - compiled
    """One group's part of scatter; False if a code is out of range or a value not finite."""
    k2, k4, k16 = start[1], start[2], start[3]
    s2, s4 = scales[0], scales[1]
    ok = True
    for i in range(begin, end):
        t = tags[i]
        c2, c4 = codes2[k2], codes4[k4]
        v2 = (np.float32(c2) - QMAX2) * s2
        v4 = (np.float32(c4) - QMAX4) * s4
        v = np.float32(v2 if t == 0 else (v4 if t == 1 else values16[k16]))  # as stored
        ok &= ((t != 0) | (c2 <= 2 * QMAX2)) & ((t != 1) | (c4 <= 2 * QMAX4))
        ok &= np.isfinite(v)
        out[sent[i]] = v
        k2 += t == 0
        k4 += t == 1
        k16 += t == 2
    return ok


def _scatter(
    size, sent, bounds, counts, tags, codes2, codes4, values16, scales
):  # pragma: no cover
    """The dense update, and whether every code was in range and every value finite.

    The code and value arrays carry one padding element at the end: every slot is read
    branch-free and the cursor of the coordinate's class advances.
    """
    out = np.zeros(size, np.float32)
    starts = _starts(counts)
    groups = bounds.size - 1
    valid = np.ones(groups, np.bool_)
    for g in prange(groups):  # each group reads its own slices
        valid[g] = _scatter_group(
            out,
            sent,
            bounds[g],
            bounds[g + 1],
            starts[g],
            tags,
            codes2,
            codes4,
            values16,
            scales[g],
        )
    return out, valid.all()


@njit(cache=True)
def bitmap_positions(bitmap, size):  # pragma: no cover - compiled
    """Positions of the set bits of a little-endian bitmap of `size` bits (branch-free)."""
    out = np.empty(size + 1, np.int64)
    k = 0
    for p in range(size):
        out[k] = p
        k += (bitmap[p >> 3] >> (p & 7)) & 1
    return out[:k]


@njit(cache=True)
def pack_bitmap(positions, size):  # pragma: no cover - compiled
    """A little-endian bitmap of `size` bits with the given positions set."""
    out = np.zeros((size + 7) // 8, np.uint8)
    for p in positions:
        out[p >> 3] |= np.uint8(1) << np.uint8(p & 7)
    return out


@njit(cache=True)
def largest_gap(positions):  # pragma: no cover - compiled
    """The largest gap code of sorted positions (first position, differences minus one)."""
    largest = 0
    previous = -1
    for p in positions:
        largest = max(largest, p - previous - 1)
        previous = p
    return largest


@njit(cache=True)
def tag_counts(tags, bounds):  # pragma: no cover - compiled
    """[G, 4] counts of each 2-bit tag value in each group's run of sent coordinates."""
    counts = np.zeros((bounds.size - 1, 4), np.int64)
    for g in range(bounds.size - 1):
        for i in range(bounds[g], bounds[g + 1]):
            counts[g, tags[i]] += 1
    return counts


def _renamed(function: types.FunctionType, suffix: str) -> types.FunctionType:
    """The same function under another qualified name: numba names a cache file after it, so
    the parallel compilation of a kernel gets files of its own beside the serial one's."""
    copy = types.FunctionType(function.__code__, function.__globals__, function.__name__ + suffix)
    copy.__qualname__ = function.__qualname__ + suffix
    return copy


class Kernels:
    """classify, tally, gather and scatter, compiled serially or in parallel, cached on disk."""

    def __init__(self, parallel: bool) -> None:
        suffix = "_parallel" if parallel else ""

        def compile_(function: types.FunctionType):
            return njit(parallel=parallel, cache=True)(_renamed(function, suffix))

        self.classify = compile_(_classify)
        self.tally = compile_(_tally)
        self.gather = compile_(_gather)
        self.scatter = compile_(_scatter)


SERIAL = Kernels(parallel=False)
PARALLEL_FROM = 1 << 20  # coordinates from which the parallel kernels are used
_parallel: Kernels | None = None


def for_size(size: int) -> Kernels:
    """The kernels to use for an update of this many coordinates."""
    global _parallel
    if size < PARALLEL_FROM:
        return SERIAL
    if _parallel is None:
        _parallel = Kernels(parallel=True)
    return _parallel
