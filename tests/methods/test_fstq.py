"""Fed-FSTQ codec: allocation by importance, error bounds per class, exact sizes, budgets."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from simulator.errors import MessageError
from simulator.methods import kernels
from simulator.methods.base import CodecContext, Group
from simulator.methods.fstq import FedFSTQ, FSTQOptions
from simulator.methods.packing import OVERHEAD

QMAX = {2: kernels.QMAX2, 4: kernels.QMAX4}
GROUPS = tuple(Group(f"g{i}", i * 600, (20, 30)) for i in range(5))
N = 3000


def _case(seed: int = 0) -> tuple[np.ndarray, CodecContext]:
    rng = np.random.default_rng(seed)
    update = rng.normal(0, 0.01, N).astype(np.float32) * rng.lognormal(0, 1, N).astype(np.float32)
    fisher = rng.lognormal(0, 1, N).astype(np.float32)
    return update, CodecContext(GROUPS, seed=seed, fisher=fisher)


def _classes(update: np.ndarray, context: CodecContext) -> np.ndarray:
    return FedFSTQ().allocate(update, context)


def test_allocation_follows_importance_and_fractions():
    update, context = _case()
    classes = _classes(update, context)
    counts = np.bincount(classes, minlength=4) / N
    np.testing.assert_allclose(counts[::-1], [0.05, 0.20, 0.35, 0.40], atol=2 / N)
    importance = context.fisher * update * update
    order = np.argsort(importance)
    assert (np.diff(classes[order].astype(int)) >= 0).all()  # more important, never fewer bits


def test_round_trip_error_bounds_per_class():
    update, context = _case(1)
    codec = FedFSTQ()
    decoded = codec.decode(codec.encode(update, context), context)
    classes = _classes(update, context)
    assert (decoded[classes == 0] == 0).all()  # pruned exactly 0
    fp16 = classes == 3
    np.testing.assert_array_equal(decoded[fp16], update[fp16].astype(np.float16))
    for c, width in ((1, 2), (2, 4)):
        for g in GROUPS:
            own = np.zeros(N, dtype=bool)
            own[g.offset : g.offset + g.size] = True
            chosen = own & (classes == c)
            if not chosen.any():
                continue
            step = np.abs(update[chosen]).max() / QMAX[width]
            error = np.abs(decoded[chosen] - update[chosen])
            assert error.max() <= step / 2 * (1 + 1e-5), (g.name, width)


def test_size_is_exact_and_matches_hand_count():
    update, context = _case(2)
    codec = FedFSTQ()
    message = codec.encode(update, context)
    classes = _classes(update, context)
    assert codec.size(update, classes, GROUPS) == len(message)
    # hand count: 7-byte position block per group (bitmap of 600 bits = 75 bytes, dense here)
    sent = int((classes > 0).sum())
    counts = [int((classes == c).sum()) for c in (1, 2, 3)]
    scales = sum(
        int(((classes[g.offset : g.offset + g.size]) == c).any()) for g in GROUPS for c in (1, 2)
    )
    expected = (
        OVERHEAD
        + 5 * (6 + 75)
        + -(-sent * 2 // 8)
        + 4 * scales
        + -(-counts[0] * 2 // 8)
        + -(-counts[1] * 4 // 8)
        + 2 * counts[2]
    )
    assert len(message) == expected
    assert len(message) < 0.4 * 2 * N  # well under dense fp16


@pytest.mark.parametrize("budget", [500, 900, 1500, 2500, 4000])
def test_budget_is_never_exceeded_and_used(budget):
    update, context = _case(3)
    codec = FedFSTQ(FSTQOptions(budget="bytes", budget_bytes=budget))
    context.budget_bytes = codec.budget_for(lambda s: 0)
    message = codec.encode(update, context)
    assert len(message) <= budget
    unbudgeted = len(FedFSTQ().encode(update, CodecContext(GROUPS, 3, fisher=context.fisher)))
    if budget < unbudgeted:
        assert len(message) > budget - 200  # the greedy fill uses most of the budget
    decoded = codec.decode(message, context)
    assert decoded.shape == (N,)


def test_budget_below_the_empty_message_sends_the_empty_message():
    update, context = _case(4)
    context.budget_bytes = 10
    codec = FedFSTQ()
    decoded = codec.decode(codec.encode(update, context), context)
    assert (decoded == 0).all()


def test_link_budget_asks_the_link_for_upload_s():
    codec = FedFSTQ(FSTQOptions(budget="link", upload_s=2.5))
    asked = []
    assert codec.budget_for(lambda s: asked.append(s) or 12_345) == 12_345
    assert asked == [2.5]
    assert FedFSTQ().budget_for(lambda s: 1) is None


def test_deterministic_and_rejects_mismatches():
    update, context = _case(5)
    codec = FedFSTQ()
    assert codec.encode(update, context) == codec.encode(update, context)
    other = CodecContext(GROUPS[:4], fisher=context.fisher[:2400])
    with pytest.raises(MessageError):
        codec.decode(codec.encode(update, context), other)


def test_options_are_validated():
    with pytest.raises(ValidationError):
        FSTQOptions(fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValidationError):
        FSTQOptions(budget="link")
    with pytest.raises(ValidationError):
        FSTQOptions(budget_bytes=100)


@pytest.mark.parametrize(("bad", "match"), [(np.nan, "non-finite"), (np.inf, "non-finite")])
def test_non_finite_updates_are_refused_like_every_codec(bad, match):
    """Before: the fstq encoder skipped the check, and NaN coordinates were silently pruned."""
    update, context = _case()
    update[3] = bad
    with pytest.raises(ValueError, match=match):
        FedFSTQ().encode(update, context)


def test_magnitude_and_random_importance_ignore_the_fisher():
    update, context = _case()
    magnitude = FedFSTQ(FSTQOptions(importance="magnitude"))
    flat = CodecContext(GROUPS, seed=0, fisher=np.ones(N, dtype=np.float32))
    np.testing.assert_array_equal(magnitude.allocate(update, context), _classes(update, flat))
    assert not magnitude.needs_fisher and FedFSTQ().needs_fisher
    random = FedFSTQ(FSTQOptions(importance="random"))
    no_fisher = CodecContext(GROUPS, seed=5)
    picked = random.allocate(update, no_fisher)
    np.testing.assert_array_equal(picked, random.allocate(update * 3, no_fisher))  # not Δθ
    assert np.bincount(picked, minlength=4).tolist() == [1200, 1050, 600, 150]  # 35/20/5 %
    assert not np.array_equal(picked, random.allocate(update, CodecContext(GROUPS, seed=6)))


@pytest.mark.parametrize("bits", [1.0, 2.0, 3.0])
@pytest.mark.parametrize("importance", ["fisher", "magnitude", "random"])
def test_bits_per_parameter_budget_is_met_by_every_importance(bits, importance):
    update, context = _case()
    codec = FedFSTQ(FSTQOptions(budget="bits", bits_per_param=bits, importance=importance))
    message = codec.encode(update, context)
    assert 0.9 * bits * N / 8 <= len(message) <= bits * N / 8
    assert codec.decode(message, context).shape == (N,)


def test_mass_allocation_follows_how_concentrated_the_importance_is():
    update, context = _case()
    codec = FedFSTQ(FSTQOptions(allocation="mass"))
    spread = np.count_nonzero(codec.allocate(update, context))
    peaked = update.copy()
    peaked[:30] *= 1000.0  # 1 % of the coordinates now hold nearly all of Σu
    concentrated = np.count_nonzero(codec.allocate(peaked, context))
    assert concentrated <= 30 < spread
    assert len(codec.encode(peaked, context)) < len(codec.encode(update, context)) / 3
    fixed = FedFSTQ()  # percentile: the same count whatever the distribution
    assert np.count_nonzero(fixed.allocate(peaked, context)) == 1800
