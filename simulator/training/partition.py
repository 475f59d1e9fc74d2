"""Dividing the training split among clients: iid, Dirichlet skew, or sorted shards.

A partition is a pure function of the data, the client count and the root seed (scope
"data", 2), so every method arm of a comparison trains on the same client data. Each kind
assigns an owner to every training example in one vectorised pass; `_collect` then turns
owners into per-client sorted index arrays.
"""

from __future__ import annotations

import logging

import numpy as np

from simulator.errors import DataError, located
from simulator.scenario import Partition
from simulator.seeds import rng
from simulator.training.data import TextData

log = logging.getLogger(__name__)

MAX_TRIES = 100  # Dirichlet redraws before topping small clients up from the largest ones


def partition(spec: Partition, data: TextData, n_clients: int, seed: int) -> list[np.ndarray]:
    """Per client a sorted int64 array of training indices; disjoint, covering data.train."""
    train = data.train
    if n_clients < 1:
        raise ValueError(f"n_clients must be positive, got {n_clients}")
    if n_clients * spec.min_samples > train.size:
        raise DataError(
            located(
                data.source,
                "partition.min_samples",
                f"{n_clients} clients x min_samples {spec.min_samples} = "
                f"{n_clients * spec.min_samples} exceeds the {train.size} training examples",
                "lower population.clients or partition.min_samples, or use more data",
            )
        )
    gen = rng(seed, "data", 2)
    if spec.kind == "iid":
        items = gen.permutation(train)
        owner = np.repeat(np.arange(n_clients), _iid_sizes(gen, spec, n_clients, train.size))
    elif spec.kind == "dirichlet":
        items, owner = _dirichlet(gen, spec, _key(spec, data), train, n_clients)
    else:
        items, owner = _shards(gen, spec, _key(spec, data), train, n_clients)
        _check_shards(spec, data, owner, n_clients)
    return _collect(items, owner, n_clients)


def _key(spec: Partition, data: TextData) -> np.ndarray:
    """The category that skews the partition: the label or the metadata group."""
    if spec.by == "group":
        if data.groups is None:
            raise DataError(
                located(
                    data.source,
                    "partition.by",
                    "'group' needs a metadata field, and this data set has none",
                    "set data.group (a jsonl/csv column, or pubmedqa 'mesh'/'year'), "
                    "or use by = 'label'",
                )
            )
        return data.groups
    if data.labels is None:
        raise DataError(
            located(
                data.source,
                "partition.by",
                "'label' needs labels, and causal-LM text has none",
                "use kind = 'iid', or by = 'group' with data.group set",
            )
        )
    return data.labels


def _iid_sizes(gen: np.random.Generator, spec: Partition, n: int, total: int) -> np.ndarray:
    """min_samples each, the rest in proportion to lognormal(0, size_sigma) weights."""
    weights = gen.lognormal(0.0, spec.size_sigma, n)
    share = weights / weights.sum() * (total - n * spec.min_samples)
    sizes = np.floor(share).astype(np.int64)
    short = total - n * spec.min_samples - int(sizes.sum())
    sizes[np.argsort(sizes - share, kind="stable")[:short]] += 1  # largest remainders
    return sizes + spec.min_samples


def _dirichlet(
    gen: np.random.Generator, spec: Partition, key: np.ndarray, train: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each category's examples split among clients with proportions ~ Dir(alpha)."""
    cats = key[train]
    pools = [gen.permutation(train[cats == c]) for c in np.unique(cats)]
    items = np.concatenate(pools)
    for _ in range(MAX_TRIES):
        counts = [_cuts(gen.dirichlet(np.full(n, spec.alpha)), pool.size) for pool in pools]
        owner = np.repeat(np.tile(np.arange(n), len(pools)), np.concatenate(counts))
        if np.bincount(owner, minlength=n).min() >= spec.min_samples:
            return items, owner
    return items, _top_up(gen, owner, n, spec.min_samples)


def _cuts(proportions: np.ndarray, size: int) -> np.ndarray:
    """Integer counts summing to size, by rounding the cumulative proportions."""
    bounds = np.rint(np.cumsum(proportions) * size).astype(np.int64)
    bounds[-1] = size
    return np.diff(bounds, prepend=0)


def _top_up(gen: np.random.Generator, owner: np.ndarray, n: int, minimum: int) -> np.ndarray:
    """Move examples from the largest clients to those below minimum (water-filling).

    With many clients no Dirichlet draw gives every client `minimum` examples; rather than
    fail, the last draw keeps its skew except that small clients get examples of big ones.
    """
    sizes = np.bincount(owner, minlength=n)
    deficit = np.maximum(minimum - sizes, 0)
    order = np.lexsort((gen.random(owner.size), owner))
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size) - (np.cumsum(sizes) - sizes)[owner[order]]
    # Taking an example of rank r leaves its client r examples: take the highest ranks.
    give = np.argsort(-rank, kind="stable")[: deficit.sum()]
    owner = owner.copy()
    owner[give] = np.repeat(np.arange(n), deficit)
    log.warning(
        "dirichlet partition: no draw in %d gave all %d clients >= %d examples; moved %d "
        "examples from the largest clients to %d small ones",
        MAX_TRIES,
        n,
        minimum,
        give.size,
        np.count_nonzero(deficit),
    )
    return owner


def _shards(
    gen: np.random.Generator, spec: Partition, key: np.ndarray, train: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sort by category, cut into n * shards_per_client shards, deal them out at random."""
    shuffled = gen.permutation(train)
    items = shuffled[np.argsort(key[shuffled], kind="stable")]
    n_shards = n * spec.shards_per_client
    bounds = np.linspace(0, items.size, n_shards + 1).astype(np.int64)
    shard_owner = np.empty(n_shards, np.int64)
    shard_owner[gen.permutation(n_shards)] = np.arange(n_shards) // spec.shards_per_client
    return items, np.repeat(shard_owner, np.diff(bounds))


def _check_shards(spec: Partition, data: TextData, owner: np.ndarray, n: int) -> None:
    smallest = int(np.bincount(owner, minlength=n).min())
    if smallest < spec.min_samples:
        raise DataError(
            located(
                data.source,
                "partition.shards_per_client",
                f"{n * spec.shards_per_client} shards of {data.train.size} training examples "
                f"leave a client {smallest} examples, below min_samples {spec.min_samples}",
                "lower partition.shards_per_client or partition.min_samples, or use more data",
            )
        )


def _collect(items: np.ndarray, owner: np.ndarray, n: int) -> list[np.ndarray]:
    """Owners -> one sorted int64 index array per client."""
    order = np.lexsort((items, owner))
    cuts = np.cumsum(np.bincount(owner, minlength=n))[:-1]
    return np.split(items[order].astype(np.int64), cuts)


def _categories(data: TextData) -> tuple[np.ndarray | None, tuple[str, ...]]:
    """What a histogram counts: labels, else groups (causal LM), else nothing but samples."""
    if data.labels is not None:
        return data.labels, data.label_names
    if data.groups is not None:
        return data.groups, data.group_names
    return None, ()


def label_histogram(parts: list[np.ndarray], data: TextData) -> np.ndarray:
    """[clients, categories] int64 counts; one column of sample counts if nothing to count."""
    key, names = _categories(data)
    sizes = np.array([part.size for part in parts], dtype=np.int64)
    if key is None:
        return sizes[:, None]
    client = np.repeat(np.arange(len(parts)), sizes)
    flat = client * len(names) + key[np.concatenate(parts)]
    return np.bincount(flat, minlength=len(parts) * len(names)).reshape(len(parts), len(names))


def partition_table(parts: list[np.ndarray], data: TextData) -> tuple[list[str], list[list[int]]]:
    """partition.csv's columns and rows: client, samples, one count per category."""
    _, names = _categories(data)
    hist = label_histogram(parts, data) if names else np.empty((len(parts), 0), np.int64)
    rows = zip(parts, hist.tolist(), strict=True)
    return ["client", "samples", *names], [
        [k, part.size, *counts] for k, (part, counts) in enumerate(rows)
    ]
