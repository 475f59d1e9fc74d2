"""tools/intent_csv.py: a category's test share is seeded, the test file sorted by category."""

from __future__ import annotations

import csv
import importlib
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT


@pytest.fixture
def intent_csv(monkeypatch):
    monkeypatch.syspath_prepend(str(PROJECT_ROOT / "tools"))
    return importlib.import_module("intent_csv")


def rows(path: Path) -> list[tuple[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        assert next(reader) == ["text", "category"]
        return [tuple(row) for row in reader]


def test_the_shipped_questions_split_by_category_with_a_sorted_test_file(tmp_path, intent_csv):
    assert intent_csv.main(["--out", str(tmp_path), "--test", "0.25", "--seed", "3"]) == 0
    train, test = rows(tmp_path / "train.csv"), rows(tmp_path / "test.csv")
    every = intent_csv.questions(intent_csv.SOURCE)
    assert sorted(train + test) == sorted(every) and len(every) == 1190
    categories = [category for _, category in test]
    assert categories == sorted(categories) and len(set(categories)) == 48
    for category in set(categories):
        size = sum(c == category for _, c in every)
        assert categories.count(category) == round(0.25 * size)
    remaining = iter(every)
    assert all(row in remaining for row in train)  # a subsequence of the file: its order
    again = tmp_path / "again"
    intent_csv.main(["--out", str(again), "--test", "0.25", "--seed", "3"])
    assert rows(again / "test.csv") == test
    intent_csv.main(["--out", str(again), "--test", "0.25", "--seed", "4"])
    assert rows(again / "test.csv") != test
