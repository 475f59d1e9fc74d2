"""Dense codecs and the frame: exact fp32, fp16 within its rounding, malformed frames rejected."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.errors import MessageError
from simulator.methods.base import CodecContext, Group
from simulator.methods.packing import OVERHEAD, frame, unframe
from simulator.methods.registry import codec

CONTEXT = CodecContext((Group("a", 0, (3, 4)), Group("b", 12, (5,))))


def _update(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.01, CONTEXT.size).astype(np.float32)


def test_fp32_round_trip_is_exact_and_sized():
    update = _update()
    message = codec("fp32").encode(update, CONTEXT)
    assert len(message) == OVERHEAD + 4 * 17
    np.testing.assert_array_equal(codec("fp32").decode(message, CONTEXT), update)


def test_fp16_round_trip_within_half_an_ulp():
    update = _update(1)
    message = codec("fp16").encode(update, CONTEXT)
    assert len(message) == OVERHEAD + 2 * 17
    decoded = codec("fp16").decode(message, CONTEXT)
    ulp = np.spacing(np.abs(update).astype(np.float16)).astype(np.float32)
    assert np.all(np.abs(decoded - update) <= ulp / 2 + 1e-12)
    assert not np.array_equal(decoded, update)


@pytest.mark.parametrize(
    "damage",
    [
        lambda m: m[:-1],
        lambda m: m[:10],
        lambda m: b"XXXX" + m[4:],
        lambda m: m[:20] + bytes([m[20] ^ 0xFF]) + m[21:],
        lambda m: m + b"\0",
        lambda m: b"",
    ],
    ids=["truncated", "header-only", "magic", "flipped-byte", "trailing", "empty"],
)
def test_damaged_messages_raise_message_error(damage):
    message = codec("fp16").encode(_update(), CONTEXT)
    with pytest.raises(MessageError):
        codec("fp16").decode(damage(message), CONTEXT)


def test_frame_checks_codec_and_size():
    message = frame(2, 17, b"\0" * 34)
    with pytest.raises(MessageError, match="codec id 2, expected 1"):
        unframe(message, 1, 17)
    with pytest.raises(MessageError, match="17 coordinates, the model has 18"):
        unframe(message, 2, 18)
    flags, payload = unframe(frame(2, 17, b"ab", flags=5), 2, 17)
    assert (flags, bytes(payload)) == (5, b"ab")


def test_non_finite_values_are_rejected():
    update = _update()
    update[3] = np.inf
    message = codec("fp32").encode(update, CONTEXT)
    with pytest.raises(MessageError, match="non-finite"):
        codec("fp32").decode(message, CONTEXT)
