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

from simulator.errors import MessageError

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
