"""Every built-in decoder survives damaged messages: MessageError or a finite update, nothing else.

Each example encodes a random update for a small random layout with the codec's default options,
damages the message one way, and decodes it on a fresh server-side context. A decoder may reject
(MessageError) or return a float32 vector of exactly the layout's size with finite values; any
other exception, a NumPy RuntimeWarning, or an example slower than the deadline fails the test.
"""

from __future__ import annotations

from datetime import timedelta
from functools import cache
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.errors import MessageError
from simulator.methods import registry
from simulator.methods.base import CodecContext, Group
from simulator.methods.packing import frame, unframe
from simulator.methods.registry import codec

FUZZ = settings(
    max_examples=200,
    deadline=timedelta(seconds=2),  # catches hangs; compiling a kernel specialisation can take ~1 s
    database=None,
)


def _codec_params() -> list:
    params = []
    for name in registry.CODECS.builtins:
        try:
            registry.CODECS.resolve(name)
        except ValueError as exc:
            params.append(pytest.param(name, marks=pytest.mark.skip(reason=str(exc))))
        else:
            params.append(name)
    return params


CODECS = _codec_params()
pytestmark = [
    pytest.mark.parametrize("name", CODECS),
    pytest.mark.filterwarnings("error::RuntimeWarning"),
]


@cache
def _codec(name: str) -> Any:
    """The codec, warmed up by one round trip (compiled kernels build on first use)."""
    built = codec(name)
    groups = (Group("g", 0, (64,)),)
    fisher = np.ones(64, dtype=np.float32) if built.needs_fisher else None
    update = np.linspace(-1, 1, 64, dtype=np.float32)
    built.decode(built.encode(update, CodecContext(groups, fisher=fisher)), CodecContext(groups))
    return built


@pytest.fixture(autouse=True)
def _warm(name: str) -> None:
    """Build (and warm) the codec outside Hypothesis, so compiling is not timed as an example."""
    _codec(name)


class Case:
    """A codec, a layout and a valid message for it."""

    def __init__(self, name: str, data: st.DataObject) -> None:
        self.codec = _codec(name)
        sizes = data.draw(st.lists(st.integers(1, 40), min_size=1, max_size=4), label="sizes")
        offsets = np.cumsum([0, *sizes])
        self.groups = tuple(Group(f"g{i}", int(offsets[i]), (n,)) for i, n in enumerate(sizes))
        self.size = int(offsets[-1])
        seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
        rng = np.random.default_rng(seed)
        update = rng.normal(0, 10.0 ** rng.integers(-6, 3), self.size).astype(np.float32)
        update[rng.random(self.size) < 0.3] = 0.0
        fisher = np.ones(self.size, dtype=np.float32) if self.codec.needs_fisher else None
        context = CodecContext(self.groups, seed=seed, fisher=fisher)
        self.message = self.codec.encode(update, context)
        self.flags, payload = unframe(self.message, self.codec.codec_id, self.size)
        self.payload = bytes(payload)

    def decode(self, message: bytes) -> np.ndarray | None:
        """The decoded update, or None when the decoder rejected the message."""
        try:
            decoded = self.codec.decode(message, CodecContext(self.groups))
        except MessageError:
            return None
        assert isinstance(decoded, np.ndarray)
        assert decoded.dtype == np.float32
        assert decoded.shape == (self.size,)
        assert np.isfinite(decoded).all()
        return decoded

    def reframe(self, payload: bytes, flags: int) -> bytes:
        """A frame with a valid CRC around a (damaged) payload."""
        return frame(self.codec.codec_id, self.size, payload, flags)


def _flip(data: st.DataObject, message: bytes) -> bytes:
    """XOR 1–8 distinct bytes with non-zero masks."""
    if not message:
        return message
    where = data.draw(st.sets(st.integers(0, len(message) - 1), min_size=1, max_size=8))
    damaged = bytearray(message)
    for i in where:
        damaged[i] ^= data.draw(st.integers(1, 255))
    return bytes(damaged)


def _splice(data: st.DataObject, message: bytes) -> bytes:
    """Replace a (possibly empty) range with random bytes."""
    start = data.draw(st.integers(0, len(message)))
    end = data.draw(st.integers(start, min(len(message), start + 16)))
    return message[:start] + data.draw(st.binary(max_size=16)) + message[end:]


# Random flips seldom produce these: all ones (a NaN), ±inf in fp32 and fp16, and the largest
# finite fp32 and fp16 (a scale that overflows when a decoder multiplies it by a code).
_SPECIAL = [
    b"\xff\xff\xff\xff",
    b"\x00\x00\x80\x7f",
    b"\x00\x00\x80\xff",
    b"\x00\x7c",
    b"\x00\xfc",
    b"\xff\xff\x7f\x7f",
    b"\xff\x7b",
]


def _overwrite(data: st.DataObject, message: bytes) -> bytes:
    """Write one special pattern at a random offset, often near the end (where values sit)."""
    pattern = data.draw(st.sampled_from(_SPECIAL))
    last = max(0, len(message) - len(pattern))
    near_end = st.integers(0, min(last, 7)).map(lambda back: last - back)
    at = data.draw(st.one_of(st.integers(0, last), near_end))
    return message[:at] + pattern + message[at + len(pattern) :]


@FUZZ
@given(data=st.data())
def test_every_truncation_is_rejected(name, data):
    case = Case(name, data)
    assert case.decode(case.message) is not None
    for cut in range(len(case.message)):
        assert case.decode(case.message[:cut]) is None


@FUZZ
@given(data=st.data())
def test_flipped_bytes_are_rejected(name, data):
    # The CRC32 (or a header check) catches every such flip, bar a 2^-32 chance of collision.
    case = Case(name, data)
    assert case.decode(_flip(data, case.message)) is None


@FUZZ
@given(data=st.data())
def test_spliced_messages_are_safe(name, data):
    case = Case(name, data)
    case.decode(_splice(data, case.message))


@FUZZ
@given(data=st.data())
def test_mutated_payload_with_valid_crc_is_safe(name, data):
    case = Case(name, data)
    damage = data.draw(st.sampled_from([_flip, _splice, _overwrite]))
    payload = damage(data, case.payload)
    flags = data.draw(st.one_of(st.just(case.flags), st.integers(0, 0xFFFF)))
    case.decode(case.reframe(payload, flags))


@FUZZ
@given(data=st.data())
def test_random_junk_is_safe(name, data):
    case = Case(name, data)
    length = data.draw(st.one_of(st.just(len(case.payload)), st.integers(0, 300)))
    junk = data.draw(st.binary(min_size=length, max_size=length))
    if data.draw(st.booleans()):
        flags = data.draw(st.one_of(st.just(case.flags), st.integers(0, 0xFFFF)))
        case.decode(case.reframe(junk, flags))
    else:
        case.decode(junk)


@settings(FUZZ, max_examples=40)
@given(data=st.data())
def test_special_patterns_at_every_payload_offset(name, data):
    case = Case(name, data)
    for pattern in _SPECIAL:
        for at in range(len(case.payload)):
            payload = case.payload[:at] + pattern + case.payload[at + len(pattern) :]
            case.decode(case.reframe(payload, case.flags))
