"""Client partitions: disjoint, inside the training split, seeded, and as skewed as asked."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from conftest import scenario_dict

from simulator.errors import DataError, ScenarioError
from simulator.recorder import write_csv_atomic
from simulator.scenario import FileData, Partition, PubMedQAData, SyntheticData, load_scenario
from simulator.training.data import TextData, load_data
from simulator.training.partition import label_histogram, partition, partition_table

KINDS = ("iid", "dirichlet", "shards")


@pytest.fixture(scope="module")
def data() -> TextData:
    return load_data(SyntheticData(kind="synthetic", samples=4000), "classification", 7)


def causal(groups: bool) -> TextData:
    """A small causal-LM data set, with or without metadata groups."""
    return TextData(
        source="lm.jsonl",
        texts=[f"line {i}" for i in range(40)],
        labels=None,
        label_names=(),
        groups=np.arange(40, dtype=np.int64) % 3 if groups else None,
        group_names=("de", "en", "fr") if groups else (),
        train=np.arange(0, 40, 2, dtype=np.int64),
        validation=np.arange(1, 40, 2, dtype=np.int64),
    )


def check_parts(parts: list[np.ndarray], data: TextData, n_clients: int, minimum: int) -> None:
    assert len(parts) == n_clients
    assert all(p.dtype == np.int64 and np.all(np.diff(p) > 0) for p in parts)
    flat = np.concatenate(parts)
    assert flat.size == np.unique(flat).size  # disjoint
    assert np.array_equal(np.sort(flat), data.train)  # exactly the training split
    assert min(p.size for p in parts) >= minimum


def skew(hist: np.ndarray) -> float:
    """Mean total-variation distance between client and global label distributions."""
    client = hist / hist.sum(axis=1, keepdims=True)
    overall = hist.sum(axis=0) / hist.sum()
    return float(np.mean(0.5 * np.abs(client - overall).sum(axis=1)))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("n_clients", "minimum"), [(10, 4), (1000, 1)])
def test_partitions_are_disjoint_cover_train_and_respect_min(data, kind, n_clients, minimum):
    spec = Partition(kind=kind, min_samples=minimum)
    parts = partition(spec, data, n_clients, seed=3)
    check_parts(parts, data, n_clients, minimum)


@pytest.mark.parametrize("kind", KINDS)
def test_partitions_depend_only_on_the_seed(data, kind):
    spec = Partition(kind=kind)
    a, b, c = (partition(spec, data, 20, seed) for seed in (3, 3, 4))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, z) for x, z in zip(a, c, strict=True))


def test_iid_sizes_equal_or_lognormal(data):
    equal = [p.size for p in partition(Partition(kind="iid"), data, 7, seed=1)]
    assert max(equal) - min(equal) <= 1 and sum(equal) == data.train.size
    spread = [p.size for p in partition(Partition(kind="iid", size_sigma=1.0), data, 50, seed=1)]
    assert max(spread) > 4 * min(spread) and min(spread) >= 4
    hist = label_histogram(partition(Partition(kind="iid"), data, 10, seed=1), data)
    assert skew(hist) < 0.06


def test_dirichlet_small_alpha_is_more_skewed(data):
    def mean_skew(alpha: float) -> float:
        spec = Partition(kind="dirichlet", alpha=alpha, min_samples=1)
        return skew(label_histogram(partition(spec, data, 20, seed=5), data))

    low, high = mean_skew(0.05), mean_skew(100.0)
    assert low > 0.5 and high < 0.1
    sizes = [p.size for p in partition(Partition(kind="dirichlet", alpha=0.3), data, 20, seed=5)]
    assert max(sizes) > 3 * min(sizes)  # unequal sizes come naturally


def test_dirichlet_by_group_skews_topics_not_only_labels(data):
    spec = Partition(kind="dirichlet", by="group", alpha=0.1, min_samples=1)
    parts = partition(spec, data, 10, seed=2)
    check_parts(parts, data, 10, 1)
    topics = np.stack([np.bincount(data.groups[p], minlength=4) for p in parts])
    assert skew(topics) > 0.4


def test_dirichlet_tops_up_small_clients_when_no_draw_fits(data, caplog):
    spec = Partition(kind="dirichlet", alpha=0.5, min_samples=3)
    with caplog.at_level(logging.WARNING, logger="simulator.training.partition"):
        parts = partition(spec, data, 1000, seed=0)
    check_parts(parts, data, 1000, 3)
    assert "moved" in caplog.text and "1000 clients" in caplog.text
    iid = partition(Partition(kind="iid", min_samples=3), data, 1000, seed=0)

    def labels_per_client(parts: list[np.ndarray]) -> float:
        return float(np.mean((label_histogram(parts, data) > 0).sum(axis=1)))

    assert labels_per_client(parts) < labels_per_client(iid) - 0.2  # the skew survives


@pytest.mark.parametrize("per_client", [1, 2, 3])
def test_shards_give_few_labels_per_client(data, per_client):
    spec = Partition(kind="shards", shards_per_client=per_client)
    parts = partition(spec, data, 20, seed=9)
    distinct = [np.unique(data.labels[p]).size for p in parts]
    assert max(distinct) <= 2 * per_client  # a shard is smaller than a class: at most 2 labels
    if per_client == 1:
        assert np.mean(np.array(distinct) == 1) > 0.7


def test_shards_too_small_for_min_samples(data):
    spec = Partition(kind="shards", shards_per_client=4, min_samples=3)
    with pytest.raises(DataError, match=r"synthetic: partition\.shards_per_client: 4000 shards"):
        partition(spec, data, 1000, seed=0)


def test_too_many_clients_for_min_samples(data):
    with pytest.raises(DataError, match=r"1000 clients x min_samples 4 = 4000 exceeds the 3200"):
        partition(Partition(kind="iid", min_samples=4), data, 1000, seed=0)


def test_by_group_without_groups_and_by_label_without_labels():
    with pytest.raises(DataError, match=r"lm\.jsonl: partition\.by: 'group' needs.*Fix: set data"):
        partition(Partition(by="group"), causal(groups=False), 2, seed=0)
    with pytest.raises(DataError, match=r"partition\.by: 'label' needs labels.*Fix: use kind"):
        partition(Partition(by="label"), causal(groups=True), 2, seed=0)
    parts = partition(Partition(by="group", min_samples=1), causal(groups=True), 3, seed=0)
    check_parts(parts, causal(groups=True), 3, 1)


def test_histogram_counts_labels_per_client(data):
    parts = partition(Partition(kind="dirichlet", alpha=0.2), data, 6, seed=1)
    hist = label_histogram(parts, data)
    assert hist.shape == (6, 4) and hist.dtype == np.int64
    assert hist.sum(axis=1).tolist() == [p.size for p in parts]
    assert hist.sum(axis=0).tolist() == np.bincount(data.labels[data.train]).tolist()
    assert hist[2, 1] == np.sum(data.labels[parts[2]] == 1)


def write_histogram(path: Path, parts, data) -> None:
    """partition.csv as the recorder writes it."""
    write_csv_atomic(path, *partition_table(parts, data))


def test_write_histogram_file(tmp_path: Path, data):
    parts = partition(Partition(kind="shards"), data, 5, seed=1)
    path = tmp_path / "partition.csv"
    write_histogram(path, parts, data)
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["client", "samples", "class0", "class1", "class2", "class3"]
    assert [int(r[0]) for r in rows[1:]] == [0, 1, 2, 3, 4]
    assert [int(r[1]) for r in rows[1:]] == [p.size for p in parts]
    assert [list(map(int, r[2:])) for r in rows[1:]] == label_histogram(parts, data).tolist()
    assert [p.name for p in tmp_path.iterdir()] == ["partition.csv"]


def test_causal_lm_histograms(tmp_path: Path):
    grouped, plain = causal(groups=True), causal(groups=False)
    parts = partition(Partition(kind="iid", min_samples=1), grouped, 3, seed=0)
    assert label_histogram(parts, grouped).shape == (3, 3)
    assert label_histogram(parts, plain).tolist() == [[p.size] for p in parts]
    write_histogram(tmp_path / "g.csv", parts, grouped)
    write_histogram(tmp_path / "p.csv", parts, plain)
    header = (tmp_path / "g.csv").read_text().splitlines()[0]
    assert header == "client,samples,de,en,fr"
    assert (tmp_path / "p.csv").read_text().splitlines()[1] == f"0,{parts[0].size}"


def test_pubmedqa_dirichlet_by_mesh_group(shared_datasets: Path):
    path = shared_datasets / "pubmedqa" / "ori_pqal.json"
    data = load_data(PubMedQAData(kind="pubmedqa", path=str(path)), "classification", 3)
    spec = Partition(kind="dirichlet", by="group", alpha=0.5, min_samples=4)
    parts = partition(spec, data, 20, seed=3)
    check_parts(parts, data, 20, 4)
    groups_per_client = [np.unique(data.groups[p]).size for p in parts]
    assert max(groups_per_client) > 5 and label_histogram(parts, data).shape == (20, 3)


def grouped(sizes: list[int]) -> TextData:
    """Training examples in groups of the given sizes (every other row held out)."""
    groups = np.repeat(np.arange(len(sizes)), [2 * s for s in sizes]).astype(np.int64)
    return TextData(
        source="intents.csv",
        texts=[f"row {i}" for i in range(groups.size)],
        labels=None,
        label_names=(),
        groups=groups,
        group_names=tuple(f"g{i}" for i in range(len(sizes))),
        train=np.arange(0, groups.size, 2, dtype=np.int64),
        validation=np.arange(1, groups.size, 2, dtype=np.int64),
    )


def natural(**fields) -> Partition:
    return Partition(kind="natural", by="group", min_samples=1, **fields)


def test_natural_gives_one_group_per_client_even_with_unequal_sizes():
    data = grouped([1071, 900, 700])  # sizes at which shards mixed groups
    parts = partition(natural(), data, 3, seed=0)
    check_parts(parts, data, 3, 1)
    assert sorted((np.unique(data.groups[p]).tolist(), p.size) for p in parts) == [
        ([0], 1071),
        ([1], 900),
        ([2], 700),
    ]


def test_natural_spreads_big_groups_over_more_clients():
    data = grouped([1071, 900, 700])
    parts = partition(natural(), data, 10, seed=4)
    check_parts(parts, data, 10, 1)
    owners = [np.unique(data.groups[p]) for p in parts]
    assert all(o.size == 1 for o in owners)
    # one each, then 7 more in proportion to 1071:900:700 -> 2.81, 2.36, 1.84 -> 3, 2, 2
    assert np.bincount([int(o[0]) for o in owners]).tolist() == [4, 3, 3]
    sizes = {
        g: sorted(p.size for p, o in zip(parts, owners, strict=True) if o[0] == g) for g in range(3)
    }
    assert sizes == {0: [267, 268, 268, 268], 1: [300, 300, 300], 2: [233, 233, 234]}


def test_natural_needs_a_client_per_group_and_min_samples():
    data = grouped([30, 20, 10, 5])
    with pytest.raises(
        DataError,
        match=r"intents\.csv: partition\.kind: .*has 4 of them but "
        r"population\.clients is 3\. Fix: set population\.clients to at least 4",
    ):
        partition(natural(), data, 3, seed=0)
    with pytest.raises(DataError, match=r"leaves a client 5 examples, below min_samples 6"):
        partition(Partition(kind="natural", by="group", min_samples=6), data, 4, seed=0)


def test_natural_by_language_on_the_synthetic_topics(data):
    spec = Partition(kind="natural", by="group")
    parts = partition(spec, data, 8, seed=1)
    check_parts(parts, data, 8, 4)
    assert [np.unique(data.groups[p]).size for p in parts] == [1] * 8
    assert partition(spec, data, 8, seed=1)[3].tolist() == parts[3].tolist()  # seeded


PARTITIONER = """
import numpy as np
from pydantic import BaseModel
from simulator.training.partition import Partitioner

class RoundRobin(Partitioner):
    class Options(BaseModel):
        model_config = {"extra": "forbid"}
        offset: int = 0

    def assign(self, gen, data, n):
        return data.train, (np.arange(data.train.size) + self.options.offset) % n

class Broken(Partitioner):
    def assign(self, gen, data, n):
        return data.train[:-1], np.zeros(data.train.size - 1, dtype=np.int64)

class NotOne:
    pass
"""


def test_a_users_partitioner_by_module_and_class(tmp_path, monkeypatch, data):
    (tmp_path / "mypartitions.py").write_text(PARTITIONER)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = Partition(kind="mypartitions:RoundRobin", options={"offset": 1})
    parts = partition(spec, data, 5, seed=0)
    check_parts(parts, data, 5, 4)
    assert parts[1][:2].tolist() == data.train[[0, 5]].tolist()
    with pytest.raises(ValueError, match=r"partition\.options: .*offst"):
        Partition(kind="mypartitions:RoundRobin", options={"offst": 1})
    with pytest.raises(ValueError, match=r"is not a partitioner: it lacks assign"):
        Partition(kind="mypartitions:NotOne")
    with pytest.raises(
        DataError,
        match=r"partition\.kind: partitioner 'mypartitions:Broken' did "
        r"not assign each of the 3200 training examples",
    ):
        partition(Partition(kind="mypartitions:Broken"), data, 5, seed=0)


def test_instruction_data_partition_by_their_label_column(tmp_path):
    rows = [
        {"prompt": f"utterance {i}", "response": f"intent_{i % 3}", "category": f"c{i % 3}"}
        for i in range(60)
    ]
    path = tmp_path / "intents.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = FileData(
        kind="jsonl", path=str(path), prompt="prompt", response="response", label="category"
    )
    data = load_data(spec, "causal_lm", 0)
    assert data.label_names == ("c0", "c1", "c2")
    parts = partition(Partition(kind="natural", by="label", min_samples=1), data, 3, seed=0)
    assert sorted(np.unique(data.labels[p]).tolist() for p in parts) == [[0], [1], [2]]
    plain = FileData(kind="jsonl", path=str(path), prompt="prompt", response="response")
    assert load_data(plain, "causal_lm", 0).labels is None  # no "label" column: none kept


def test_scenario_names_partition_kind_and_allows_labelled_instructions(write_scenario):
    def real(partition: dict, **data) -> dict:
        training = {
            "mode": "real",
            "task": "causal_lm",
            "partition": partition,
            "data": {"kind": "jsonl", "path": "scenario.toml", **data},
        }
        return scenario_dict(
            training=training, methods=[{"name": "fp16"}], evaluation={"targets": [10.0]}
        )

    with pytest.raises(ScenarioError, match=r"training\.partition.*unknown partitioner 'natral'"):
        load_scenario(write_scenario(real({"kind": "natral"})))
    with pytest.raises(ScenarioError, match=r"plain text has no labels to partition by"):
        load_scenario(write_scenario(real({"kind": "natural"})))
    labelled = real({"kind": "natural"}, prompt="p", response="r", label="intent")
    assert load_scenario(write_scenario(labelled)).training.partition.kind == "natural"
