"""Control variates at the server (SCAFFOLD) and the bundle that carries them beside an update.

A client algorithm with server arrays (simulator/training/algorithms.py: `shared`) makes every
uplink message a bundle: the update's codec message, then one message per array (the client's
Δ of it, encoded with the arm's downlink codec, like the broadcast of the arrays themselves).
Each part is preceded by its length as a little-endian u32, so a truncated or damaged bundle is
a MessageError like any malformed message, and `len()` of the bundle is what the uplink moves.
numpy only.
"""

from __future__ import annotations

import struct

import numpy as np

from simulator.errors import MessageError
from simulator.server.aggregation import fedavg

_LENGTH = struct.Struct("<I")


def bundle(parts: list[bytes]) -> bytes:
    """The parts, each behind its length."""
    return b"".join(_LENGTH.pack(len(part)) + part for part in parts)


def unbundle(message: bytes, count: int) -> list[bytes]:
    """The `count` parts of a bundle; MessageError when it holds anything else."""
    parts, at = [], 0
    for _ in range(count):
        if len(message) < at + _LENGTH.size:
            raise MessageError(f"bundle of {len(message)} bytes ends before part {len(parts) + 1}")
        (length,) = _LENGTH.unpack_from(message, at)
        at += _LENGTH.size
        if len(message) < at + length:
            raise MessageError(f"bundle part {len(parts) + 1} of {length} bytes is truncated")
        parts.append(message[at : at + length])
        at += length
    if at != len(message):
        raise MessageError(f"bundle holds {len(message) - at} bytes after its {count} parts")
    return parts


def control_update(control: np.ndarray, deltas: list[np.ndarray], clients: int) -> np.ndarray:
    """c + (|S|/N)·mean(Δc_i) = c + Σ Δc_i / N (Karimireddy et al. 2020, Algorithm 1): the mean
    of the client variates moves by what the |S| participants changed, out of N clients."""
    mean = fedavg([(1.0, delta) for delta in deltas])
    if mean is None:
        return control
    return (control + np.float32(len(deltas) / clients) * mean).astype(np.float32)
