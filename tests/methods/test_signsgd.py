"""EF-signSGD: exact size, per-group scaled signs, residual carried, strict decoding."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from simulator.errors import MessageError
from simulator.methods.base import CodecContext, Group
from simulator.methods.packing import OVERHEAD, frame, unframe
from simulator.methods.registry import codec

GROUPS = (Group("a", 0, (3, 4)), Group("b", 12, (5,)))
SIZE = 17
A, B = slice(0, 12), slice(12, 17)


def _context(state: dict | None = None) -> CodecContext:
    return CodecContext(GROUPS, seed=0, state={} if state is None else state)


def _update(seed: int = 0) -> np.ndarray:
    update = np.random.default_rng(seed).normal(0, 0.01, SIZE).astype(np.float32)
    update[B] *= 100  # groups of very different scale
    return update


def test_message_size_by_hand():
    message = codec("signsgd").encode(_update(), _context())
    assert len(message) == OVERHEAD + 2 * 4 + 3  # 2 group scales + ⌈17/8⌉ sign bytes


def test_decoded_is_group_scale_times_sign():
    update = _update(1)
    update[5] = 0.0  # sgn(0) = +1
    context = _context()
    decoded = codec("signsgd").decode(codec("signsgd").encode(update, context), _context())
    for part in (A, B):
        scale = np.float32(np.abs(update[part].astype(np.float64)).mean())
        np.testing.assert_array_equal(np.abs(decoded[part]), scale)
    np.testing.assert_array_equal(decoded > 0, update >= 0)
    assert decoded.dtype == np.float32
    np.testing.assert_array_equal(context.state["residual"], update - decoded)


def test_residual_is_carried_into_the_next_round():
    signsgd = codec("signsgd")
    state: dict = {}
    first, second = _update(2), _update(3)
    signsgd.encode(first, _context(state))
    residual = state["residual"]
    context = _context(state)
    decoded = signsgd.decode(signsgd.encode(second, context), _context())
    p = second + residual
    np.testing.assert_array_equal(decoded > 0, p >= 0)
    assert np.abs(decoded[B][0]) == np.float32(np.abs(p[B].astype(np.float64)).mean())
    np.testing.assert_array_equal(context.state["residual"], p - decoded)


def test_no_ef_keeps_no_state():
    signsgd = codec("signsgd", {"ef": False})
    context = _context()
    update = _update(4)
    decoded = signsgd.decode(signsgd.encode(update, context), _context())
    assert context.state == {}
    np.testing.assert_array_equal(decoded > 0, update >= 0)


def test_deterministic():
    assert codec("signsgd").encode(_update(5), _context()) == codec("signsgd").encode(
        _update(5), _context()
    )


@pytest.mark.parametrize("options", [{"ef": "maybe"}, {"bits": 1}])
def test_bad_options_raise_validation_error(options):
    with pytest.raises(ValidationError):
        codec("signsgd", options)


def _set_scale(value: float):
    def edit(payload: bytes) -> bytes:
        return np.float32(value).tobytes() + payload[4:]

    return edit


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_set_scale(np.nan), "finite and non-negative"),
        (_set_scale(-np.inf), "finite and non-negative"),
        (_set_scale(-0.5), "finite and non-negative"),
        (lambda p: p + b"\0", "trailing"),
        (lambda p: p[:-1], "need 3 bytes"),
    ],
    ids=["nan-scale", "inf-scale", "negative-scale", "extra-byte", "short"],
)
def test_inconsistent_payloads_raise_message_error(edit, match):
    flags, payload = unframe(codec("signsgd").encode(_update(), _context()), 5, SIZE)
    message = frame(5, SIZE, edit(bytes(payload)), flags)
    with pytest.raises(MessageError, match=match):
        codec("signsgd").decode(message, _context())
