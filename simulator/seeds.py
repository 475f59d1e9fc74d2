"""Seed scopes: one root seed, independent named streams (pfl-research style).

A stream is identified by a domain name and integer coordinates (client id, round, ...), so
the numbers a client draws in a round never depend on how many other clients, arms or workers
exist. Every method arm of a comparison asks for the same scopes and therefore sees the same
sampled clients, dropouts and link offsets (common random numbers).
"""

from __future__ import annotations

import zlib

import numpy as np

DOMAINS = (
    "population",
    "devices",
    "network",
    "selection",
    "dropout",
    "sessions",
    "data",
    "training",
    "quality",
    "faults",
    "downlink",
)


def _domain_id(domain: str) -> int:
    if domain not in DOMAINS:
        raise ValueError(f"unknown seed domain {domain!r}; known: {', '.join(DOMAINS)}")
    return zlib.crc32(domain.encode())


def seed_sequence(root: int, domain: str, *coords: int) -> np.random.SeedSequence:
    """The SeedSequence of one scope: stable across runs, platforms and worker counts."""
    return np.random.SeedSequence(entropy=root, spawn_key=(_domain_id(domain), *map(int, coords)))


def rng(root: int, domain: str, *coords: int) -> np.random.Generator:
    """A fresh generator for one scope, e.g. rng(seed, "dropout", round)."""
    return np.random.default_rng(seed_sequence(root, domain, *coords))


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def uniforms(root: int, domain: str, coords: tuple[int, ...], ids: np.ndarray) -> np.ndarray:
    """One U[0,1) per id in a scope, without building a generator per id.

    A counter-based draw (splitmix64 of the scope key and the id), so client 7's dropout in
    round 3 is the same number whichever other clients are drawn with it, in any order.
    """
    key = seed_sequence(root, domain, *coords).generate_state(1, np.uint64)[0]
    with np.errstate(over="ignore"):
        bits = _splitmix64(np.asarray(ids, dtype=np.uint64) * _GOLDEN ^ key)
    return (bits >> np.uint64(11)).astype(np.float64) / float(1 << 53)
