"""Seed scopes: a (root, domain, coordinates) scope always gives the same stream, different
scopes give different ones, and the counter-based uniforms do not depend on which other ids
are drawn with them or in what order."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from scipy import stats

from simulator import seeds


def _draws(*scope, n: int = 8) -> np.ndarray:
    return seeds.rng(*scope).random(n)


def test_the_same_scope_gives_the_same_stream_from_fresh_generators():
    a = _draws(7, "dropout", 3, 11)
    b = _draws(7, "dropout", 3, 11)
    np.testing.assert_array_equal(a, b)
    state = seeds.seed_sequence(7, "dropout", 3, 11).generate_state(4)
    np.testing.assert_array_equal(state, seeds.seed_sequence(7, "dropout", 3, 11).generate_state(4))


@pytest.mark.parametrize(
    "other",
    [
        (8, "dropout", 3, 11),  # root
        (7, "network", 3, 11),  # domain
        (7, "dropout", 4, 11),  # first coordinate
        (7, "dropout", 3, 12),  # second coordinate
        (7, "dropout", 11, 3),  # coordinates swapped
        (7, "dropout", 3),  # fewer coordinates
        (7, "dropout", 3, 11, 0),  # an extra coordinate, even 0
    ],
)
def test_a_different_root_domain_or_coordinate_gives_a_different_stream(other):
    assert not np.array_equal(_draws(7, "dropout", 3, 11), _draws(*other))


def test_every_domain_has_its_own_stream():
    firsts = {domain: seeds.rng(0, domain, 1).integers(2**63) for domain in seeds.DOMAINS}
    assert len(set(firsts.values())) == len(seeds.DOMAINS)


def test_a_scope_does_not_depend_on_which_other_scopes_were_drawn_before():
    alone = _draws(5, "selection", 2)
    for round_index in range(5):  # other rounds and domains drawn in between
        seeds.rng(5, "selection", round_index).random(100)
        seeds.rng(5, "devices").random(3)
    np.testing.assert_array_equal(_draws(5, "selection", 2), alone)


def test_coordinates_accept_numpy_integers():
    np.testing.assert_array_equal(
        _draws(1, "training", np.int64(4), np.uint32(2)), _draws(1, "training", 4, 2)
    )


def test_an_unknown_domain_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown seed domain 'dropouts'.*dropout"):
        seeds.rng(0, "dropouts", 1)


def test_scopes_are_pinned_so_old_run_directories_keep_reproducing():
    # A scope is SeedSequence(root, spawn_key=(crc32(domain), *coords)), and uniforms are
    # plain uint64 arithmetic: these numbers must not change between versions or platforms.
    expected = np.random.SeedSequence(entropy=7, spawn_key=(zlib.crc32(b"dropout"), 3))
    state = seeds.seed_sequence(7, "dropout", 3).generate_state(2)
    np.testing.assert_array_equal(state, expected.generate_state(2))
    assert state.tolist() == [2665798360, 4156662964]
    u = seeds.uniforms(7, "dropout", (3,), np.array([0, 1, 5]))
    assert u.tolist() == [0.7002402539459096, 0.9617332142719199, 0.848860210750275]


def test_uniforms_are_the_same_whichever_other_ids_are_drawn_and_in_what_order():
    ids = np.arange(50)
    full = seeds.uniforms(3, "dropout", (4,), ids)
    assert full.shape == (50,) and full.dtype == np.float64
    subset = np.array([42, 7, 0, 19])
    np.testing.assert_array_equal(seeds.uniforms(3, "dropout", (4,), subset), full[subset])
    shuffled = np.random.default_rng(0).permutation(ids)
    np.testing.assert_array_equal(seeds.uniforms(3, "dropout", (4,), shuffled), full[shuffled])
    single = seeds.uniforms(3, "dropout", (4,), np.array([7]))
    assert single[0] == full[7]


def test_uniforms_differ_between_scopes_and_ids():
    ids = np.arange(20)
    base = seeds.uniforms(3, "dropout", (4,), ids)
    assert len(set(base.tolist())) == 20  # no two ids share a draw
    for scope in (
        (4, "dropout", (4,)),
        (3, "faults", (4,)),
        (3, "dropout", (5,)),
        (3, "dropout", ()),
    ):
        other = seeds.uniforms(*scope, ids)
        assert not np.any(other == base), scope


def test_uniforms_lie_in_the_unit_interval_and_look_uniform():
    u = seeds.uniforms(11, "sessions", (0,), np.arange(20_000))
    assert u.min() >= 0.0 and u.max() < 1.0
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    # consecutive ids are not correlated (a weak counter hash would show here)
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.03


def test_uniforms_handle_large_ids_without_overflow_warnings():
    ids = np.array([0, 2**40, 2**63 - 1], dtype=np.int64)
    with np.errstate(all="raise"):
        u = seeds.uniforms(0, "population", (), ids)
    assert np.all((u >= 0) & (u < 1)) and len(set(u.tolist())) == 3
