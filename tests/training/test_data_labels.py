"""Labels and held-out files (simulator/training/data.py): one class per label however a file
spells it, and an eval_path that is the training file refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from simulator.errors import DataError
from simulator.scenario import FileData
from simulator.training.data import load_data


def _texts(n: int) -> list[str]:
    return [f"example number {i} about things" for i in range(n)]


def _load(path: Path, kind: str = "jsonl", **fields):
    return load_data(FileData(kind=kind, path=str(path), **fields), "classification", 0)


def test_jsonl_labels_1_and_quoted_1_and_1_0_are_one_class(tmp_path):
    spelt = [1, "1", 1.0, " 1 ", 0, "0", 0.0, "0.00"] * 3
    path = tmp_path / "mixed.jsonl"
    rows = [{"text": t, "label": label} for t, label in zip(_texts(24), spelt, strict=True)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    data = _load(path)
    assert data.label_names == ("0", "1")
    by_row = np.empty(24, np.int64)  # the split shuffles: map texts back to their rows
    by_row[[int(text.split()[2]) for text in data.texts]] = data.labels
    assert by_row.tolist() == [1, 1, 1, 1, 0, 0, 0, 0] * 3


def test_csv_labels_spelt_as_numbers_and_declared_labels_agree(tmp_path):
    path = tmp_path / "mixed.csv"
    labels = ["2", "2.0", "1", "1.0", "10", "1e1"] * 4
    body = "".join(f"{t},{label}\n" for t, label in zip(_texts(24), labels, strict=True))
    path.write_text("text,label\n" + body, encoding="utf-8")
    assert _load(path, "csv").label_names == ("1", "10", "2")
    declared = _load(path, "csv", labels=["1.0", "2", "10.0"])
    assert declared.label_names == ("1", "2", "10")
    with pytest.raises(DataError, match=r"data\.labels: '1' and '1\.0' name one label"):
        _load(path, "csv", labels=["1", "1.0", "2", "10"])


def test_an_eval_path_that_is_the_training_file_is_refused(tmp_path):
    path = tmp_path / "train.jsonl"
    rows = [{"text": t, "label": i % 2} for i, t in enumerate(_texts(20))]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    copy = shutil.copy(path, tmp_path / "copy.jsonl")
    for same in (path, copy, tmp_path / "." / "train.jsonl"):
        with pytest.raises(DataError) as caught:
            _load(path, eval_path=str(same))
        assert str(caught.value).startswith(f"{same}: data.eval_path: is the training file")
        assert "Fix: give a separate held-out file" in str(caught.value)
    held = tmp_path / "held.jsonl"
    held.write_text(json.dumps({"text": "another example", "label": 1}) + "\n")
    assert _load(path, eval_path=str(held)).texts[-1] == "another example"
