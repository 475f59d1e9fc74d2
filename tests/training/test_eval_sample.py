"""The evaluated rows: a seeded random (optionally stratified) sample, never the file's head."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from simulator.errors import DataError
from simulator.scenario import FileData, SyntheticData
from simulator.seeds import rng
from simulator.training.data import load_data

CLASSES = 20


def sorted_by_class(path: Path, per_class: int) -> Path:
    """An intent-style `text,category` file sorted by category, as test files often are."""
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "category"])
        for c in range(CLASSES):
            writer.writerows([f"utterance {c}-{i}", f"intent_{c:02d}"] for i in range(per_class))
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return {
        "path": sorted_by_class(tmp_path / "train.csv", 10),
        "eval_path": sorted_by_class(tmp_path / "test.csv", 30),
    }


def load(files: dict[str, Path], seed: int = 0, **fields):
    spec = FileData(
        kind="csv",
        path=str(files["path"]),
        eval_path=str(files["eval_path"]),
        label="category",
        eval_samples=100,
        **fields,
    )
    return load_data(spec, "classification", seed)


def test_a_sorted_evaluation_file_is_sampled_across_its_classes(files):
    data = load(files)
    classes = np.unique(data.labels[data.validation])
    assert data.validation.size == 100
    assert classes.size >= 17  # the first 100 rows would be 4 classes (30 rows each)
    assert data.eval_rows.tolist() == sorted(set(data.eval_rows.tolist()))
    assert data.eval_rows.max() < 600 and data.eval_rows.max() > 400
    texts = [data.texts[i] for i in data.validation]
    assert texts[0] == f"utterance {data.eval_rows[0] // 30}-{data.eval_rows[0] % 30}"
    again, other = load(files), load(files, seed=1)
    assert np.array_equal(again.eval_rows, data.eval_rows)  # the same for every arm
    assert not np.array_equal(other.eval_rows, data.eval_rows)


def test_stratified_keeps_each_class_share(files):
    data = load(files, eval_stratify="label")
    counts = np.bincount(data.labels[data.validation], minlength=CLASSES)
    assert counts.tolist() == [5] * CLASSES  # 30 of 600 rows each: 5 of 100


def test_stratified_with_unequal_strata_uses_largest_remainders(tmp_path):
    data = load_data(
        SyntheticData(kind="synthetic", samples=1000, eval_samples=50, eval_stratify="group"),
        "classification",
        3,
    )
    pool = rng(3, "data", 1).permutation(1000)[:200]  # the held-out pool, as _split draws it
    counts = np.bincount(data.groups[pool], minlength=4)
    quota = np.floor(counts / 200 * 50).astype(int)
    got = np.bincount(data.groups[data.validation], minlength=4)
    assert got.sum() == 50 and np.all(got >= quota) and np.all(got <= quota + 1)
    assert set(data.validation.tolist()) <= set(pool.tolist())


def test_the_seeded_split_is_unchanged_without_stratification():
    data = load_data(
        SyntheticData(kind="synthetic", samples=400, eval_samples=30), "classification", 5
    )
    perm = rng(5, "data", 1).permutation(400)
    assert data.validation.tolist() == np.sort(perm[:80][:30]).tolist()
    assert data.eval_rows.tolist() == data.validation.tolist()


def test_stratifying_by_a_missing_key_is_an_error(files):
    with pytest.raises(DataError, match=r"train\.csv: data\.eval_stratify: 'group' needs groups"):
        load(files, eval_stratify="group")
