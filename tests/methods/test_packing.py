"""Payload primitives: b-bit packing, position blocks and the bounded Reader."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from simulator.errors import MessageError
from simulator.methods.packing import (
    BITMAP,
    DELTAS,
    Reader,
    encode_positions,
    pack_uint,
    packed_size,
    positions_size,
    unpack_uint,
)

_POSITIONS = struct.Struct("<BIB")


@pytest.mark.parametrize("bits", range(1, 33))
@pytest.mark.parametrize("count", [0, 1, 7, 1001])
def test_pack_round_trip_and_size(bits, count):
    rng = np.random.default_rng(bits * 10_000 + count)
    values = rng.integers(0, 2**bits, count, dtype=np.uint64)
    if count:
        values[0] = 2**bits - 1  # the widest value must survive
    data = pack_uint(values, bits)
    assert len(data) == -(-count * bits // 8) == packed_size(count, bits)
    np.testing.assert_array_equal(unpack_uint(data, bits, count), values)


def test_pack_layout_is_little_endian_within_bytes():
    assert pack_uint(np.array([1, 0, 0, 1, 1, 1, 1, 1, 1]), 1) == bytes([0b11111001, 0b1])
    assert pack_uint(np.array([0x1, 0x2, 0x3]), 4) == bytes([0x21, 0x03])
    assert pack_uint(np.array([5, 2, 7]), 3) == bytes([0b11_010_101, 0b1])


def test_unpack_short_data_raises():
    with pytest.raises(MessageError, match="need 2 bytes"):
        unpack_uint(b"\x01", 3, 5)


@pytest.mark.parametrize(("values", "bits"), [([5, 0], 2), ([300], 8), ([-1], 3), ([2**16], 16)])
def test_pack_rejects_values_out_of_range(values, bits):
    # Without the check, 5 in 2 bits would spill into (and corrupt) its neighbour.
    with pytest.raises(ValueError, match="values must be in"):
        pack_uint(np.array(values), bits)


@pytest.mark.parametrize("bits", [0, 33])
def test_pack_rejects_bad_width(bits):
    with pytest.raises(ValueError, match="bits must be in 1..32"):
        pack_uint(np.zeros(3, dtype=np.uint8), bits)


def _header(block: bytes) -> tuple[int, int, int]:
    return _POSITIONS.unpack_from(block)


def test_sparse_positions_use_gaps():
    positions = np.array([3, 4, 90, 999])
    block = encode_positions(positions, 1000)
    gaps_width = (999 - 90 - 1).bit_length()
    assert _header(block) == (DELTAS, 4, gaps_width)
    assert len(block) == _POSITIONS.size + packed_size(4, gaps_width)
    assert positions_size(positions, 1000) == len(block)
    reader = Reader(block)
    np.testing.assert_array_equal(reader.positions(1000), positions)
    reader.done()


def test_dense_positions_use_a_bitmap():
    positions = np.r_[0:50, 53:100]  # gaps need 2 bits each: 25 bytes, the bitmap 13
    block = encode_positions(positions, 100)
    assert _header(block) == (BITMAP, 97, 0)
    assert len(block) == _POSITIONS.size + 13
    assert positions_size(positions, 100) == len(block)
    reader = Reader(block)
    np.testing.assert_array_equal(reader.positions(100), positions)
    reader.done()


@pytest.mark.parametrize(
    ("positions", "size"), [([], 10), ([0], 1), ([9], 10), (list(range(10)), 10), ([], 0)]
)
def test_edge_positions_round_trip(positions, size):
    positions = np.array(positions, dtype=np.int64)
    block = encode_positions(positions, size)
    assert positions_size(positions, size) == len(block)
    reader = Reader(block)
    np.testing.assert_array_equal(reader.positions(size), positions)
    reader.done()


def test_reader_take_unpack_and_uints():
    reader = Reader(struct.pack("<If", 7, 2.5) + pack_uint(np.array([1, 2, 3]), 5))
    assert reader.unpack(struct.Struct("<If")) == (7, 2.5)
    np.testing.assert_array_equal(reader.uints(5, 3), [1, 2, 3])
    reader.done()


def test_reader_rejects_truncation_and_trailing_bytes():
    with pytest.raises(MessageError, match="truncated"):
        Reader(b"abc").take(4)
    with pytest.raises(MessageError, match="truncated"):
        Reader(b"abc").take(-1)
    reader = Reader(b"abc")
    reader.take(2)
    with pytest.raises(MessageError, match="1 unexpected trailing"):
        reader.done()
    block = encode_positions(np.array([1, 5]), 100)
    with pytest.raises(MessageError, match="truncated"):
        Reader(block[:-1]).positions(100)


@pytest.mark.parametrize(
    ("block", "size", "match"),
    [
        (_POSITIONS.pack(2, 0, 1), 10, "bad position block"),
        (_POSITIONS.pack(DELTAS, 1, 0) + b"\0", 10, "bad position block"),
        (_POSITIONS.pack(DELTAS, 1, 33) + b"\0" * 5, 10, "bad position block"),
        (_POSITIONS.pack(DELTAS, 11, 1) + b"\0" * 2, 10, "11 positions in a group of 10"),
        (_POSITIONS.pack(BITMAP, 2, 0) + b"\x01\x00", 10, "does not fit"),  # bitmap holds 1
        (_POSITIONS.pack(DELTAS, 2, 4) + bytes([0x95]), 10, "does not fit"),  # 5, 15 ≥ 10
    ],
    ids=["mode", "width-0", "width-33", "count", "bitmap-count", "outside"],
)
def test_reader_rejects_bad_position_blocks(block, size, match):
    with pytest.raises(MessageError, match=match):
        Reader(block).positions(size)
