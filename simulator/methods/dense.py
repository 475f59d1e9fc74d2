"""Dense codecs (FedAvg-LoRA): every coordinate as an fp32 or fp16 value."""

from __future__ import annotations

import numpy as np

from simulator.errors import MessageError
from simulator.methods.base import CodecContext
from simulator.methods.packing import frame, unframe


class DenseCodec:
    """The whole flat update in one floating-point dtype, little-endian."""

    def __init__(self, name: str, codec_id: int, dtype: str) -> None:
        self.name = name
        self.codec_id = codec_id
        self.dtype = np.dtype(dtype).newbyteorder("<")

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


CODECS = {
    "fp32": DenseCodec("fp32", 1, "float32"),
    "fp16": DenseCodec("fp16", 2, "float16"),
}


def get_codec(name: str) -> DenseCodec:
    """The codec registered under a scenario name."""
    return CODECS[name]
