"""The wire format: every message is one frame with a header, a payload and a CRC32.

Frame layout (little-endian):
    magic   4 bytes  b"FSTQ"
    version u8       FORMAT_VERSION
    codec   u8       the codec id (which decoder may read the payload)
    flags   u16      codec-specific
    size    u32      length of the flat vector the message describes
    length  u32      payload bytes that follow
    payload length bytes
    crc32   u32      zlib.crc32 of everything before it

`unframe` checks all of it before a decoder sees a byte, so a truncated, corrupted or foreign
message raises MessageError and never crashes or misleads the server.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from simulator.errors import MessageError
from simulator.methods import kernels

MAGIC = b"FSTQ"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<4sBBHII")
_CRC = struct.Struct("<I")
OVERHEAD = _HEADER.size + _CRC.size


def frame(codec_id: int, size: int, payload: bytes, flags: int = 0) -> bytes:
    """Wrap a payload for a flat vector of `size` coordinates."""
    head = _HEADER.pack(MAGIC, FORMAT_VERSION, codec_id, flags, size, len(payload))
    body = head + payload
    return body + _CRC.pack(zlib.crc32(body))


def unframe(message: bytes, codec_id: int, size: int) -> tuple[int, memoryview]:
    """(flags, payload) of a frame for this codec and vector size; MessageError otherwise."""
    if len(message) < OVERHEAD:
        raise MessageError(f"message of {len(message)} bytes is shorter than a frame header")
    magic, version, got_codec, flags, got_size, length = _HEADER.unpack_from(message)
    if magic != MAGIC:
        raise MessageError(f"bad magic {magic!r}; not a fstq-sim message")
    if version != FORMAT_VERSION:
        raise MessageError(f"wire format version {version}, this decoder reads {FORMAT_VERSION}")
    if len(message) != OVERHEAD + length:
        raise MessageError(
            f"frame says {length} payload bytes but the message holds {len(message) - OVERHEAD}"
        )
    (crc,) = _CRC.unpack_from(message, len(message) - _CRC.size)
    if crc != zlib.crc32(memoryview(message)[: -_CRC.size]):
        raise MessageError("CRC32 mismatch: the message was corrupted")
    if got_codec != codec_id:
        raise MessageError(f"codec id {got_codec}, expected {codec_id}")
    if got_size != size:
        raise MessageError(f"update of {got_size} coordinates, the model has {size}")
    return flags, memoryview(message)[_HEADER.size : _HEADER.size + length]


# --- payload primitives -------------------------------------------------------------------
#
# b-bit unsigned integers are packed little-endian within bytes (value i occupies bits
# [i·b, (i+1)·b) of the stream). Widths that divide 8 (1, 2, 4, 8) and 16 are packed by
# reshaping, without expanding to one byte per bit; other widths go through a bit matrix.


def pack_uint(values: np.ndarray, bits: int) -> bytes:
    """Pack non-negative integers < 2**bits (1 <= bits <= 32) into ⌈n·bits/8⌉ bytes."""
    if not 1 <= bits <= 32:
        raise ValueError(f"bits must be in 1..32, got {bits}")
    v = np.asarray(values).reshape(-1)
    if v.size and (v.min() < 0 or v.max() >= 2**bits):
        raise ValueError(f"values must be in 0..{2**bits - 1} to pack in {bits} bits")
    if bits == 16:
        return v.astype("<u2").tobytes()
    if bits == 32:
        return v.astype("<u4").tobytes()
    if 8 % bits == 0:
        per = 8 // bits
        padded = np.zeros(-(-v.size // per) * per, dtype=np.uint8)
        padded[: v.size] = v
        out = padded[0::per].copy()
        for i in range(1, per):
            out |= padded[i::per] << np.uint8(i * bits)
        return out.tobytes()
    v = v.astype(np.uint32)
    bit_matrix = ((v[:, None] >> np.arange(bits, dtype=np.uint32)) & 1).astype(np.uint8)
    return np.packbits(bit_matrix.reshape(-1), bitorder="little").tobytes()


def packed_size(count: int, bits: int) -> int:
    """Bytes pack_uint produces for count values of this width."""
    return -(-count * bits // 8)


def unpack_uint(data: bytes | memoryview, bits: int, count: int) -> np.ndarray:
    """Inverse of pack_uint: the first count values (uint8 up to 8 bits, else uint32),
    MessageError if data is short."""
    need = packed_size(count, bits)
    if len(data) < need:
        raise MessageError(f"{count} values of {bits} bits need {need} bytes, got {len(data)}")
    raw = np.frombuffer(data, dtype=np.uint8, count=need)
    if bits == 16:
        return raw.view("<u2").astype(np.uint32)
    if bits == 32:
        return raw.view("<u4").astype(np.uint32)
    if 8 % bits == 0:
        per = 8 // bits
        mask = np.uint8((1 << bits) - 1)
        values = np.empty(need * per, dtype=np.uint8)
        for i in range(per):
            values[i::per] = (raw >> np.uint8(i * bits)) & mask
        return values[:count]
    flat = np.unpackbits(raw, bitorder="little")[: count * bits].reshape(count, bits)
    return (flat.astype(np.uint32) << np.arange(bits, dtype=np.uint32)).sum(axis=1, dtype=np.uint32)


_POSITIONS = struct.Struct("<BIB")  # mode (0 bitmap, 1 deltas), count, delta width
BITMAP, DELTAS = 0, 1


def _use_deltas(positions: np.ndarray, size: int) -> tuple[bool, int]:
    """Whether fixed-width gaps (first position, then differences minus one) beat a bitmap,
    and their width."""
    width = max(1, int(kernels.largest_gap(positions)).bit_length())
    return packed_size(positions.size, width) < packed_size(size, 1), width


def encode_positions(positions: np.ndarray, size: int) -> bytes:
    """Sorted unique positions in [0, size): the smaller of a bitmap and fixed-width gaps."""
    positions = np.asarray(positions, dtype=np.int64)
    deltas, width = _use_deltas(positions, size)
    if deltas:
        gaps = np.diff(positions, prepend=-1) - 1
        return _POSITIONS.pack(DELTAS, positions.size, width) + pack_uint(gaps, width)
    head = _POSITIONS.pack(BITMAP, positions.size, 0)
    return head + kernels.pack_bitmap(positions, size).tobytes()


def positions_size(positions: np.ndarray, size: int) -> int:
    """Bytes encode_positions would produce, without encoding."""
    positions = np.asarray(positions, dtype=np.int64)
    deltas, width = _use_deltas(positions, size)
    body = packed_size(positions.size, width) if deltas else packed_size(size, 1)
    return _POSITIONS.size + body


class Reader:
    """Sequential reads from a payload; every overrun or bad value is a MessageError."""

    def __init__(self, data: bytes | memoryview) -> None:
        self.data = memoryview(data)
        self.at = 0

    def take(self, n: int) -> memoryview:
        """The next n bytes."""
        if n < 0 or self.at + n > len(self.data):
            raise MessageError(f"payload truncated: need {n} bytes at offset {self.at}")
        chunk = self.data[self.at : self.at + n]
        self.at += n
        return chunk

    def unpack(self, fmt: struct.Struct) -> tuple:
        """The next struct."""
        return fmt.unpack(self.take(fmt.size))

    def uints(self, bits: int, count: int) -> np.ndarray:
        """The next count packed values of this width."""
        return unpack_uint(self.take(packed_size(count, bits)), bits, count)

    def positions(self, size: int) -> np.ndarray:
        """The next encode_positions block for a group of this size (checked)."""
        mode, count, width = self.unpack(_POSITIONS)
        if count > size:
            raise MessageError(f"{count} positions in a group of {size}")
        if mode == BITMAP:
            bitmap = np.frombuffer(self.take(packed_size(size, 1)), dtype=np.uint8)
            found = kernels.bitmap_positions(bitmap, size)
        elif mode == DELTAS and 1 <= width <= 32:
            found = np.cumsum(self.uints(width, count).astype(np.int64) + 1) - 1
        else:
            raise MessageError(f"bad position block (mode {mode}, width {width})")
        if found.size != count or (count and found[-1] >= size):
            raise MessageError(f"position block does not fit a group of {size}")
        return found

    def done(self) -> None:
        """The payload must be consumed exactly."""
        if self.at != len(self.data):
            raise MessageError(f"{len(self.data) - self.at} unexpected trailing payload bytes")
