"""QSGD: exact message size, per-coordinate error ≤ norm/s, unbiasedness, strict decoding."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from simulator.errors import MessageError
from simulator.methods.base import CodecContext, Group
from simulator.methods.packing import OVERHEAD, frame, unframe
from simulator.methods.qsgd import buckets
from simulator.methods.registry import codec

GROUPS = (Group("a", 0, (3, 4)), Group("b", 12, (5,)))
SIZE = 17


def _context(seed: int = 0) -> CodecContext:
    return CodecContext(GROUPS, seed=seed)


def _update(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.01, SIZE).astype(np.float32)


def _bucket_norms(x: np.ndarray, bucket: int) -> np.ndarray:
    """ℓ2 norm of each coordinate's bucket, in float64 (bucket bounds are tested separately)."""
    starts, lengths = buckets(GROUPS, bucket)
    return np.repeat(
        [
            np.linalg.norm(x[s : s + n].astype(np.float64))
            for s, n in zip(starts, lengths, strict=True)
        ],
        lengths,
    )


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        # 2 buckets (one per group, both < 512): 2 norms + ⌈17·4/8⌉ = 9 code bytes
        ({}, OVERHEAD + 2 * 4 + 9),
        # group a → buckets of 5, 5, 2; group b → 5: 4 norms + ⌈17·3/8⌉ = 7
        ({"bits": 3, "bucket": 5}, OVERHEAD + 4 * 4 + 7),
        ({"bits": 8, "bucket": 0}, OVERHEAD + 2 * 4 + 17),
        ({"bits": 16, "bucket": 1}, OVERHEAD + 17 * 4 + 34),
    ],
)
def test_message_size_by_hand(options, expected):
    message = codec("qsgd", options).encode(_update(), _context())
    assert len(message) == expected
    assert unframe(message, 3, SIZE)[0] == options.get("bits", 4)


def test_buckets_stay_inside_groups():
    starts, lengths = buckets(GROUPS, 5)
    assert starts.tolist() == [0, 5, 10, 12]
    assert lengths.tolist() == [5, 5, 2, 5]
    starts, lengths = buckets(GROUPS, 0)
    assert (starts.tolist(), lengths.tolist()) == ([0, 12], [12, 5])


@pytest.mark.parametrize("options", [{}, {"bits": 2, "bucket": 5}, {"bits": 8, "bucket": 3}])
@pytest.mark.parametrize("seed", range(5))
def test_error_at_most_norm_over_s_and_on_the_grid(options, seed):
    qsgd = codec("qsgd", options)
    s = 2 ** (qsgd.bits - 1) - 1
    update = _update(seed)
    decoded = qsgd.decode(qsgd.encode(update, _context(seed)), _context())
    norms = _bucket_norms(update, qsgd.options.bucket)
    assert decoded.dtype == np.float32
    assert np.all(np.abs(decoded - update) <= norms / s * (1 + 1e-6))
    assert np.all(decoded * update >= 0)  # never the wrong sign
    levels = np.abs(decoded) / norms * s
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-4)


def test_norms_sent_are_the_bucket_l2_norms():
    update = _update(3)
    message = codec("qsgd", {"bucket": 5}).encode(update, _context())
    _, payload = unframe(message, 3, SIZE)
    sent = np.frombuffer(payload[:16], dtype="<f4")
    starts = buckets(GROUPS, 5)[0]
    np.testing.assert_allclose(sent, _bucket_norms(update, 5)[starts], rtol=1e-6)


def test_extreme_magnitudes_keep_levels_in_range():
    update = np.zeros(SIZE, dtype=np.float32)
    update[:4] = [1e-45, -3e-39, 1e38, -1e-20]  # subnormals beside a huge value
    update[12:] = [1e-45, -1e-45, 0.0, -0.0, 2e-45]  # a bucket of subnormals only
    qsgd = codec("qsgd", {"bits": 2})  # s = 1: level 2 would flip the sign bit
    for seed in range(50):
        decoded = qsgd.decode(qsgd.encode(update, _context(seed)), _context())
        norms = _bucket_norms(update, 512)
        assert np.all(np.abs(decoded - update) <= norms * (1 + 1e-6))
        assert np.all(np.sign(decoded) * np.sign(update) >= 0)


def test_unbiased_over_seeds():
    qsgd = codec("qsgd", {"bits": 3, "bucket": 5})
    update = _update(11)
    runs = 2000
    mean = np.mean(
        [qsgd.decode(qsgd.encode(update, _context(seed)), _context()) for seed in range(runs)],
        axis=0,
    )
    # Each decode is norm/s·(ℓ + Bernoulli), so by Hoeffding P(|mean − x| ≥ ε·norm/s) ≤
    # 2·exp(−2·runs·ε²); ε = 0.06 gives ≤ 1.1e-6 per coordinate, ≤ 2e-5 over all 17. A biased
    # rounding (e.g. to nearest) is off by up to 0.5·norm/s, far outside this tolerance.
    s = 3
    norms = _bucket_norms(update, 5)
    assert np.all(np.abs(mean - update) <= 0.06 * norms / s)


def test_deterministic_per_seed():
    qsgd = codec("qsgd")
    update = _update(2)
    assert qsgd.encode(update, _context(5)) == qsgd.encode(update, _context(5))
    assert qsgd.encode(update, _context(5)) != qsgd.encode(update, _context(6))


def test_zero_update_decodes_to_zeros():
    qsgd = codec("qsgd")
    message = qsgd.encode(np.zeros(SIZE, dtype=np.float32), _context())
    np.testing.assert_array_equal(qsgd.decode(message, _context()), np.zeros(SIZE))


@pytest.mark.parametrize(
    "options", [{"bits": 1}, {"bits": 17}, {"bucket": -1}, {"bits": 4.5}, {"levels": 7}]
)
def test_bad_options_raise_validation_error(options):
    with pytest.raises(ValidationError):
        codec("qsgd", options)


def _reframed(message: bytes, edit) -> bytes:
    flags, payload = unframe(message, 3, SIZE)
    return frame(3, SIZE, edit(bytearray(payload)), flags)


def _set_norm(value: float):
    def edit(payload: bytearray) -> bytes:
        payload[:4] = np.float32(value).tobytes()
        return bytes(payload)

    return edit


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_set_norm(np.nan), "finite and non-negative"),
        (_set_norm(np.inf), "finite and non-negative"),
        (_set_norm(-1.0), "finite and non-negative"),
        (lambda p: bytes(p) + b"\0", "trailing"),
        (lambda p: bytes(p[:-1]), "need 9 bytes"),
    ],
    ids=["nan-norm", "inf-norm", "negative-norm", "extra-byte", "short-codes"],
)
def test_inconsistent_payloads_raise_message_error(edit, match):
    qsgd = codec("qsgd")
    message = _reframed(qsgd.encode(_update(), _context()), edit)
    with pytest.raises(MessageError, match=match):
        qsgd.decode(message, _context())


def test_decoder_with_other_options_rejects():
    message = codec("qsgd", {"bits": 8}).encode(_update(), _context())
    with pytest.raises(MessageError, match="8 bits, this decoder reads 4"):
        codec("qsgd").decode(message, _context())
    message = codec("qsgd", {"bucket": 5}).encode(_update(), _context())
    with pytest.raises(MessageError):
        codec("qsgd").decode(message, _context())


@pytest.mark.parametrize(
    ("update", "match"),
    [
        (np.full(SIZE, np.nan, dtype=np.float32), "non-finite"),
        (np.zeros(SIZE + 1, dtype=np.float32), "shape"),
        (np.full(SIZE, 3e38, dtype=np.float32), "fp32 range"),
    ],
)
def test_bad_updates_raise_value_error(update, match):
    with pytest.raises(ValueError, match=match):
        codec("qsgd").encode(update, _context())
