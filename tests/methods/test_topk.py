"""Top-k with error feedback: exact size, fp16-exact values, residual, ties, strict decoding."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from simulator.errors import MessageError
from simulator.methods.base import CodecContext, Group
from simulator.methods.packing import OVERHEAD, frame, unframe
from simulator.methods.registry import codec
from simulator.methods.topk import top_positions

GROUPS = (Group("a", 0, (3, 4)), Group("b", 12, (5,)))
SIZE = 17


def _context(state: dict | None = None) -> CodecContext:
    return CodecContext(GROUPS, seed=0, state={} if state is None else state)


def _update(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.01, SIZE).astype(np.float32)


def test_message_size_by_hand():
    update = np.zeros(SIZE, dtype=np.float32)
    update[[1, 7, 14]] = [0.5, -0.25, 0.125]
    message = codec("topk", {"k": 3}).encode(update, _context())
    # Each position block has a 6-byte header (mode, count, width).
    # Group a keeps 1 and 7: gaps 1, 5 → 3 bits each → 1 byte (bitmap of 12 would take 2).
    # Group b keeps 2: gap 2 → 2 bits → 1 byte, not smaller than the 1-byte bitmap → bitmap.
    # Then 3 fp16 values.
    assert len(message) == OVERHEAD + (6 + 1) + (6 + 1) + 3 * 2


def test_empty_group_costs_a_header():
    update = np.zeros(SIZE, dtype=np.float32)
    update[3] = 1.0
    message = codec("topk", {"k": 1}).encode(update, _context())
    # group a: one position (gap 3 → 2 bits → 1 byte); group b: zero positions (header only)
    assert len(message) == OVERHEAD + (6 + 1) + 6 + 2


def test_kept_values_exact_in_fp16_and_zero_elsewhere():
    topk = codec("topk", {"k": 5})
    context = _context()
    update = _update(1)
    decoded = topk.decode(topk.encode(update, context), _context())
    kept = np.argsort(-np.abs(update), kind="stable")[:5]
    np.testing.assert_array_equal(np.flatnonzero(decoded), np.sort(kept))
    np.testing.assert_array_equal(decoded[kept], update[kept].astype(np.float16))
    assert decoded.dtype == np.float32
    np.testing.assert_array_equal(context.state["residual"], update - decoded)


def test_residual_changes_the_next_selection():
    topk = codec("topk", {"k": 1})
    state: dict = {}
    first = np.zeros(SIZE, dtype=np.float32)
    first[[0, 1]] = [10.0, 9.0]
    topk.encode(first, _context(state))
    assert state["residual"][1] == 9.0
    second = np.zeros(SIZE, dtype=np.float32)
    second[2] = 5.0
    context = _context(state)
    decoded = topk.decode(topk.encode(second, context), _context())
    assert np.flatnonzero(decoded).tolist() == [1]  # 9 remembered beats the new 5
    assert context.state["residual"][2] == 5.0
    assert context.state["residual"][1] == 0.0
    no_ef = codec("topk", {"k": 1, "ef": False})
    assert np.flatnonzero(no_ef.decode(no_ef.encode(second, _context()), _context())).tolist() == [
        2
    ]


def test_residual_carries_fp16_rounding():
    topk = codec("topk", {"k": 1})
    update = np.zeros(SIZE, dtype=np.float32)
    update[4] = 0.1  # not representable in fp16
    context = _context()
    topk.encode(update, context)
    assert context.state["residual"][4] == np.float32(0.1) - np.float32(np.float16(0.1))
    assert context.state["residual"][4] != 0.0


def test_no_ef_keeps_no_state_and_ignores_a_residual():
    topk = codec("topk", {"k": 2, "ef": False})
    update = _update(2)
    stale = {"residual": np.ones(SIZE, dtype=np.float32)}
    context = _context(dict(stale))
    assert topk.encode(update, context) == topk.encode(update, _context())
    assert context.state.keys() == {"residual"}
    assert context.state["residual"] is stale["residual"]
    fresh = _context()
    topk.encode(update, fresh)
    assert fresh.state == {}


def test_ties_go_to_the_lower_position():
    magnitude = np.array([1.0, 3.0, 2.0, 3.0, 2.0, 2.0, 3.0], dtype=np.float32)
    assert top_positions(magnitude, 2).tolist() == [1, 3]
    assert top_positions(magnitude, 4).tolist() == [1, 2, 3, 6]
    assert top_positions(magnitude, 9).tolist() == list(range(7))
    update = np.zeros(SIZE, dtype=np.float32)
    update[[3, 8, 13]] = [-0.5, 0.5, 0.5]
    decoded = codec("topk", {"k": 2}).decode(
        codec("topk", {"k": 2}).encode(update, _context()), _context()
    )
    assert np.flatnonzero(decoded).tolist() == [3, 8]


def test_large_values_saturate_and_the_excess_stays_in_the_residual():
    update = np.zeros(SIZE, dtype=np.float32)
    update[0] = -1e6
    context = _context()
    topk = codec("topk", {"k": 1})
    decoded = topk.decode(topk.encode(update, context), _context())
    assert decoded[0] == -65504.0
    assert context.state["residual"][0] == -1e6 + 65504.0


@pytest.mark.parametrize(
    ("options", "kept"),
    [({}, 1), ({"ratio": 0.3}, 5), ({"k": 4}, 4), ({"k": 100}, SIZE), ({"ratio": 1.0}, SIZE)],
)
def test_k_from_options(options, kept):
    topk = codec("topk", options)
    decoded = topk.decode(topk.encode(_update(3), _context()), _context())
    assert np.count_nonzero(decoded) == kept


def test_deterministic():
    topk = codec("topk", {"k": 4})
    assert topk.encode(_update(4), _context()) == topk.encode(_update(4), _context())


@pytest.mark.parametrize(
    "options",
    [{"k": 3, "ratio": 0.1}, {"ratio": None}, {"k": 0}, {"ratio": 0.0}, {"ratio": 1.5}, {"x": 1}],
)
def test_bad_options_raise_validation_error(options):
    with pytest.raises(ValidationError):
        codec("topk", options)


def test_k_alone_replaces_the_default_ratio():
    options = codec("topk", {"k": 3}).options
    assert (options.k, options.ratio) == (3, None)


def _reframed(message: bytes, edit) -> bytes:
    flags, payload = unframe(message, 4, SIZE)
    return frame(4, SIZE, edit(bytes(payload)), flags)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda p: p[:-2] + np.float16(np.inf).tobytes(), "non-finite"),
        (lambda p: p[:-2] + np.float16(np.nan).tobytes(), "non-finite"),
        (lambda p: p + b"\0", "trailing"),
        (lambda p: p[:-1], "truncated"),
    ],
    ids=["inf", "nan", "extra-byte", "short"],
)
def test_inconsistent_payloads_raise_message_error(edit, match):
    topk = codec("topk", {"k": 3})
    message = _reframed(topk.encode(_update(), _context()), edit)
    with pytest.raises(MessageError, match=match):
        topk.decode(message, _context())


def test_decoder_expecting_another_k_rejects():
    message = codec("topk", {"k": 3}).encode(_update(), _context())
    with pytest.raises(MessageError, match="3 positions, expected k = 4"):
        codec("topk", {"k": 4}).decode(message, _context())


@pytest.mark.parametrize("state", [{"residual": np.zeros(3, dtype=np.float32)}, {}])
def test_bad_updates_and_residuals_raise_value_error(state):
    topk = codec("topk")
    with pytest.raises(ValueError, match="shape"):
        topk.encode(np.zeros(SIZE if state else SIZE - 1, dtype=np.float32), _context(state))
    with pytest.raises(ValueError, match="non-finite"):
        topk.encode(np.full(SIZE, np.inf, dtype=np.float32), _context())
