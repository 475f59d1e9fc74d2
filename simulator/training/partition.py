"""Dividing the training split among clients: iid, Dirichlet skew, sorted shards, natural groups.

A partition is a pure function of the data, the client count and the root seed (scope
"data", 2), so every method arm of a comparison trains on the same client data. Each kind is a
partitioner class (a built-in name or `package.module:Class`, found through PARTITIONERS like
every other extension point) whose `assign` gives every training example an owner in one
vectorised pass; `_collect` then turns owners into per-client sorted index arrays.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from pydantic import BaseModel

from simulator.errors import DataError, located
from simulator.registry import NoOptions, Registry, validate_options
from simulator.seeds import rng

if TYPE_CHECKING:
    from simulator.scenario import Partition
    from simulator.training.data import TextData

log = logging.getLogger(__name__)

MAX_TRIES = 100  # Dirichlet redraws before topping small clients up from the largest ones

PARTITIONERS = Registry(
    "partitioner",
    {
        "iid": "simulator.training.partition:IID",
        "dirichlet": "simulator.training.partition:Dirichlet",
        "shards": "simulator.training.partition:Shards",
        "natural": "simulator.training.partition:Natural",
    },
    ("assign",),
    "simulator/training/partition.py (Partitioner)",
)


class Partitioner:
    """A kind of partition. `assign(gen, data, n)` returns (items, owner): every index of
    `data.train` once, and the client (0..n-1) that owns it, drawn only from `gen`.
    `self.key(data)` is what the partition skews by (the labels or groups `by` names, per
    example of the whole data set), with a clear error when the data have none.

    Built from the `[training.partition]` section (its common keys: `by`, `min_samples`, and
    the built-ins' own `alpha`, `shards_per_client`, `size_sigma`) and the validated `options`
    (a user's partitioner declares them as a pydantic `Options` model)."""

    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, spec: Partition, options: BaseModel) -> None:
        self.spec = spec
        self.options = options

    def assign(
        self, gen: np.random.Generator, data: TextData, n: int
    ) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def key(self, data: TextData) -> np.ndarray:
        """The category per example that `by` names."""
        return _key(self.spec, data)


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
    cls = PARTITIONERS.resolve(spec.kind)
    partitioner = cls(spec, validate_options(cls, spec.options))
    gen = rng(seed, "data", 2)
    items, owner = partitioner.assign(gen, data, n_clients)
    _check_assignment(spec, data, items, owner, n_clients)
    return _collect(items, owner, n_clients)


def _check_assignment(
    spec: Partition, data: TextData, items: np.ndarray, owner: np.ndarray, n: int
) -> None:
    """A partitioner (a user's too) must own every training example once, within 0..n-1, and
    leave every client min_samples."""
    covers = items.shape == data.train.shape and np.array_equal(np.sort(items), data.train)
    owners = owner.shape == items.shape and owner.dtype.kind in "iu"
    if not (covers and owners and owner.min(initial=0) >= 0 and owner.max(initial=0) < n):
        raise DataError(
            located(
                data.source,
                "partition.kind",
                f"partitioner {spec.kind!r} did not assign each of the {data.train.size} "
                f"training examples to exactly one of the {n} clients",
                "fix the partitioner's assign (it returns items, owner)",
            )
        )
    smallest = int(np.bincount(owner, minlength=n).min())
    if smallest < spec.min_samples:
        raise DataError(
            located(
                data.source,
                "partition.min_samples",
                f"the {spec.kind!r} partition leaves a client {smallest} examples, below "
                f"min_samples {spec.min_samples}",
                "use fewer clients or more data, lower partition.min_samples, or change the "
                "partition's options",
            )
        )


class IID(Partitioner):
    """Shuffled; min_samples each, the rest in proportion to lognormal(0, size_sigma) weights."""

    def assign(self, gen, data, n):
        items = gen.permutation(data.train)
        return items, np.repeat(np.arange(n), _iid_sizes(gen, self.spec, n, data.train.size))


class Dirichlet(Partitioner):
    """Each category's examples split among clients with proportions ~ Dir(alpha)."""

    def assign(self, gen, data, n):
        return _dirichlet(gen, self.spec, self.key(data), data.train, n)


class Shards(Partitioner):
    """Sort by category, cut into n * shards_per_client shards, deal them out at random."""

    def assign(self, gen, data, n):
        items, owner = _shards(gen, self.spec, self.key(data), data.train, n)
        _check_shards(self.spec, data, owner, n)
        return items, owner


class Natural(Partitioner):
    """Exactly one category value per client (Flower Datasets' natural-id partition): a
    language, a topic, a user id.

    With as many clients as groups, each group is one client. With more clients, every
    group first gets one client and the other n - G clients go to the groups in proportion
    to their sizes (largest remainders, ties to the larger group), so a big group is spread
    over several clients of about the same size; a group's examples are shuffled and dealt
    out evenly among its clients. Which client ids get which group is a seeded shuffle, so
    groups do not line up with device classes. Fewer clients than groups cannot give each
    client one group: an error."""

    def assign(self, gen, data, n):
        train = data.train
        key = self.key(data)[train]
        groups, sizes = np.unique(key, return_counts=True)
        if n < groups.size:
            raise DataError(
                located(
                    data.source,
                    "partition.kind",
                    f"a natural partition gives each client exactly one {self.spec.by} value; "
                    f"the training split has {groups.size} of them but population.clients is {n}",
                    f"set population.clients to at least {groups.size} (exactly {groups.size}: "
                    "one client per group)",
                )
            )
        per_group = 1 + largest_remainders(sizes, n - groups.size)
        clients = gen.permutation(n)
        first = np.cumsum(per_group) - per_group
        items, owner = [], []
        for g, (value, count) in enumerate(zip(groups, per_group, strict=True)):
            pool = gen.permutation(train[key == value])
            items.append(pool)
            owner.append(clients[first[g] + np.arange(pool.size) % count])
        return np.concatenate(items), np.concatenate(owner)


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


def largest_remainders(weights: np.ndarray, total: int) -> np.ndarray:
    """Integers summing to total in proportion to weights (ties to the larger weight)."""
    share = weights / weights.sum() * total
    counts = np.floor(share).astype(np.int64)
    order = np.lexsort((-weights, -(share - counts)))
    counts[order[: total - int(counts.sum())]] += 1
    return counts


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
