"""Dense codecs (FedAvg-LoRA): every coordinate as an fp32 or fp16 value."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import BaseModel

from simulator.errors import MessageError
from simulator.methods.base import CodecBase, CodecContext
from simulator.methods.packing import frame, unframe
from simulator.registry import NoOptions


class _Dense(CodecBase):
    """The whole flat update in one floating-point dtype, little-endian."""

    name: ClassVar[str]
    codec_id: ClassVar[int]
    dtype: ClassVar[np.dtype]
    Options = NoOptions

    def __init__(self, options: BaseModel | None = None) -> None:
        self.options = options

    def encode(self, update: np.ndarray, context: CodecContext) -> bytes:
        """Cast and frame (fp16 rounds to nearest; overflow saturates to ±inf like any cast)."""
        return frame(self.codec_id, update.size, update.astype(self.dtype).tobytes())

    def decode(self, message: bytes, context: CodecContext) -> np.ndarray:
        """Unframe and widen back to float32."""
        _, payload = unframe(message, self.codec_id, context.size)
        if len(payload) != context.size * self.dtype.itemsize:
            raise MessageError(
                f"{self.name}: payload of {len(payload)} bytes for {context.size} coordinates"
            )
        values = np.frombuffer(payload, dtype=self.dtype).astype(np.float32)
        if not np.isfinite(values).all():
            raise MessageError(f"{self.name}: update holds non-finite values")
        return values


class DenseFP32(_Dense):
    """fp32: exact."""

    name = "fp32"
    codec_id = 1
    dtype = np.dtype("<f4")


class DenseFP16(_Dense):
    """fp16: the FedAvg-LoRA reference of the paper (16 bits per value)."""

    name = "fp16"
    codec_id = 2
    dtype = np.dtype("<f2")
