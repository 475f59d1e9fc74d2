"""An intent-style `text,category` data set with its own test file sorted by category.

    python tools/intent_csv.py --out runs/intent        # writes train.csv and test.csv

Built honestly from shipped real data, since no intent data set is shipped: every English
XQuAD question (data/xquad/xquad.en.json) is a `text`, its article's title the `category` (48
categories, 8-74 questions each). Per category a seeded `--test` share of its questions goes
to test.csv, sorted by category as intent benchmarks' test files often are; the rest to
train.csv in file order. The files show what evaluating the first rows of a sorted test file
would do (a few categories) against the seeded evaluation sample (`data.eval_samples`).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

SOURCE = Path(__file__).resolve().parent.parent / "data" / "xquad" / "xquad.en.json"


def questions(source: Path) -> list[tuple[str, str]]:
    """(question, article title) for every question of a SQuAD v1 file, in file order."""
    data = json.loads(source.read_text(encoding="utf-8"))["data"]
    return [
        (qa["question"], article["title"])
        for article in data
        for paragraph in article["paragraphs"]
        for qa in paragraph["qas"]
    ]


def split(rows: list[tuple[str, str]], test: float, seed: int) -> tuple[list, list]:
    """Train rows in file order; test rows (round(test x its size) of each category, seeded)
    sorted by category, then file order."""
    gen = np.random.default_rng(seed)
    categories = np.array([category for _, category in rows])
    held = np.zeros(len(rows), bool)
    for category in np.unique(categories):
        members = np.flatnonzero(categories == category)
        held[gen.choice(members, size=round(test * members.size), replace=False)] = True
    order = np.lexsort((np.arange(len(rows)), categories))
    return [rows[i] for i in np.flatnonzero(~held)], [rows[i] for i in order if held[i]]


def write(path: Path, rows: list[tuple[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "category"])
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for train.csv, test.csv")
    parser.add_argument("--source", type=Path, default=SOURCE, help="a SQuAD v1 JSON file")
    parser.add_argument("--test", type=float, default=0.3, help="share of each category")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    train, test = split(questions(args.source), args.test, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    write(args.out / "train.csv", train)
    write(args.out / "test.csv", test)
    categories = len({category for _, category in test})
    print(f"{args.out}: {len(train)} train and {len(test)} test rows, {categories} categories")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
