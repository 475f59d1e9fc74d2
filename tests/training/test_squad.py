"""SQuAD v1 files as QA instruction data: groups per file, whole articles held out, the
context cut around the answer, and clear errors for files that are not SQuAD."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA, real_scenario_dict
from transformers import AutoTokenizer

from simulator.errors import DataError, ScenarioError
from simulator.scenario import SquadData, load_scenario
from simulator.training.data import fit_instructions, load_data, tokenize
from simulator.training.partition import partition

WORDS = " ".join(f"w{i}" for i in range(100))
SHORT = ("u", "a short context", [("how long?", "short")])  # a second article to hold out


def squad(path: Path, articles: list[tuple[str, str, list[tuple[str, str]]]]) -> Path:
    """A SQuAD v1 file: per article its title, one context, and (question, answer) pairs whose
    answer_start is the answer's first place in the context."""
    data = [
        {
            "title": title,
            "paragraphs": [
                {
                    "context": context,
                    "qas": [
                        {
                            "id": f"{title}-{q}",
                            "question": question,
                            "answers": [{"text": answer, "answer_start": context.index(answer)}],
                        }
                        for q, (question, answer) in enumerate(pairs)
                    ],
                }
            ],
        }
        for title, context, pairs in articles
    ]
    path.write_text(json.dumps({"version": "1.1", "data": data}), encoding="utf-8")
    return path


def parallel(folder: Path, languages: tuple[str, ...] = ("de", "en", "fr")) -> list[Path]:
    """A parallel set: ten articles of four questions, the same titles in every language."""
    paths = []
    for lang in languages:
        articles = []
        for a in range(10):
            context = f"{lang} text of article {a}: " + " ".join(f"k{a}x{q}" for q in range(4))
            pairs = [(f"{lang} question {a}.{q}?", f"k{a}x{q}") for q in range(4)]
            articles.append((f"article{a}", context, pairs))
        paths.append(squad(folder / f"set.{lang}.json", articles))
    return paths


def load(paths: list[Path], **fields) -> object:
    spec = SquadData(kind="squad", path=[str(p) for p in paths], **fields)
    return load_data(spec, "causal_lm", 0)


def test_each_file_is_a_group_and_every_question_an_instruction(tmp_path):
    data = load(parallel(tmp_path))
    assert data.qa and data.labels is None
    assert data.group_names == ("de", "en", "fr")
    assert len(data.texts) == 120
    # the files' rows in turn: the head of the rows spans every language
    assert data.groups[:6].tolist() == [0, 1, 2, 0, 1, 2]
    assert data.texts[:4] == ["k0x0", "k0x0", "k0x0", "k0x1"]
    assert data.prompts[1] == (
        "Answer the question with a short span copied from the context.\n"
        "Context: en text of article 0: k0x0 k0x1 k0x2 k0x3\nQuestion: en question 0.0?"
    )
    start, end = data.answer_spans[3]
    assert data.prompts[3][start:end] == "k0x1"


def test_a_held_out_article_is_held_out_in_every_language(tmp_path):
    """A random row split would train on the translations of the questions it evaluates."""
    data = load(parallel(tmp_path), eval_samples=None)

    def articles(rows: np.ndarray) -> set[str]:
        return {data.texts[i].split("x")[0] for i in rows}

    held = articles(data.validation)
    assert len(held) == 2  # validation 0.2 of 10 articles
    assert not held & articles(data.train)
    assert data.validation.size == 2 * 4 * 3


def squad_scenario(**training) -> dict:
    raw = real_scenario_dict("smollm2-135m", evaluation={"metric": "nll", "targets": [2.0]})
    raw["training"] |= training
    return raw


def test_natural_partition_gives_each_client_one_language(tmp_path, write_scenario):
    paths = parallel(tmp_path)
    raw = squad_scenario()
    raw["population"]["clients"] = raw["population"]["per_round"] = 3
    raw["training"] |= {
        "task": "causal_lm",
        "data": {"kind": "squad", "path": "set.*.json", "eval_stratify": "group"},
        "partition": {"kind": "natural", "by": "group"},
    }
    scenario = load_scenario(write_scenario(raw))
    assert scenario.training.data.path == [str(p) for p in paths]  # the glob, every file
    data = load_data(scenario.training.data, "causal_lm", scenario.seed)
    parts = partition(scenario.training.partition, data, 3, scenario.seed)
    assert sorted(np.unique(data.groups[p]).size for p in parts) == [1, 1, 1]
    assert sorted(int(np.unique(data.groups[p])[0]) for p in parts) == [0, 1, 2]


def test_declared_groups_name_the_files(tmp_path):
    paths = parallel(tmp_path, ("a", "b"))
    data = load(paths, groups={"set.a.json": "German", "set.b.json": "English"})
    assert data.group_names == ("English", "German")
    with pytest.raises(DataError, match=r"data.groups: names no group for the file 'set.b.json'"):
        load(paths, groups={"set.a.json": "German"})


@pytest.mark.parametrize(
    ("content", "key"),
    [
        ("{not json", "line 1: not valid JSON"),
        ('{"version": "1.1"}', "data: missing, expected a non-empty list"),
        ('{"data": []}', "data: a list [], expected a non-empty list"),
        ('{"data": [{"title": "t", "paragraphs": [{"context": "c"}]}]}', "paragraphs[0].qas"),
        (
            '{"data": [{"paragraphs": [{"context": "abc", "qas": [{"question": "q?", '
            '"answers": []}]}]}]}',
            "data[0].paragraphs[0].qas[0].answers: empty (a SQuAD v2 unanswerable question)",
        ),
        (
            '{"data": [{"paragraphs": [{"context": "abc", "qas": [{"question": "q?", '
            '"answers": [{"text": "b", "answer_start": 2}]}]}]}]}',
            "qas[0].answers[0].answer_start: 2 does not point at the answer 'b'",
        ),
        (
            '{"data": [{"paragraphs": [{"context": "abc", "qas": [{"question": "q?", '
            '"answers": [{"text": "b"}]}]}]}]}',
            "qas[0].answers[0].answer_start: missing, expected a non-empty int",
        ),
    ],
)
def test_a_file_that_is_not_squad_names_file_key_and_fix(tmp_path, content, key):
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as err:
        load([path])
    assert str(err.value).startswith(f"{path}: ")
    assert key in str(err.value)
    assert "Fix: " in str(err.value)


def test_squad_data_are_for_a_causal_lm_partitioned_by_group(tmp_path, write_scenario):
    parallel(tmp_path)
    raw = squad_scenario(data={"kind": "squad", "path": "set.*.json"})
    with pytest.raises(ScenarioError, match="squad data are question answering"):
        load_scenario(write_scenario(raw))
    raw["training"]["task"] = "causal_lm"
    with pytest.raises(ScenarioError, match="squad data have no labels to partition by"):
        load_scenario(write_scenario(raw))


@pytest.fixture(scope="module")
def tokenizer(minilm_path: Path):
    return AutoTokenizer.from_pretrained(str(minilm_path))


@pytest.mark.parametrize("answer", ["w5", "w20", "w50", "w80", "w97"])
def test_a_cut_context_keeps_its_answer_its_ends_and_the_question(tmp_path, tokenizer, answer):
    """Before: the middle of the context went whatever it held (w20, w50 and w80 were lost)."""
    path = squad(tmp_path / "long.json", [("t", WORDS, [("which word?", answer)]), SHORT])
    data = load([path], validation=0.5)
    tokens = tokenize(data, tokenizer, 64)
    row = tokens.input_ids[0][: int(tokens.prompt_lengths[0])]
    text = tokenizer.decode(row)
    assert text.startswith("answer the question with a short span copied from the context. "
                           "context : w0 w1")  # fmt: skip
    assert text.endswith("w98 w99 question : which word? answer :")
    assert f" {answer} " in text
    fitted = fit_instructions(data, tokenizer, 64)
    assert fitted.cut[0] and fitted.answer_kept[0]
    assert fitted.full_lengths[0] > 64 and tokens.attention_mask[0].sum() == 64


def test_an_answer_longer_than_the_room_is_reported_lost(tmp_path, tokenizer):
    """A 114-token answer in the middle: kept at seq_len 260 (room 121: no one dropped block
    spares it, a window around it does), lost at 240 (room 101)."""
    answer = " ".join(f"w{i}" for i in range(30, 80))
    path = squad(tmp_path / "long.json", [("t", WORDS, [("which words?", answer)]), SHORT])
    data = load([path], validation=0.5)
    kept, lost = fit_instructions(data, tokenizer, 260), fit_instructions(data, tokenizer, 240)
    assert kept.cut[0] and kept.answer_kept[0] and lost.cut[0] and not lost.answer_kept[0]
    text = tokenizer.decode(kept.rows[0][: kept.prompt_lengths[0]])
    assert f" {answer} " in text and text.endswith(" question : which words? answer :")
    assert "context : w0" in text and "9 question" in text  # an end token each side (w0, w99)


def test_the_shipped_xquad_is_five_parallel_languages():
    data = load(sorted((DATA / "xquad").glob("xquad.*.json")), eval_samples=None)
    assert data.group_names == ("ar", "en", "es", "ru", "zh")
    assert np.bincount(data.groups).tolist() == [1190] * 5
    held = np.bincount(data.groups[data.validation], minlength=5)
    assert held.tolist() == [held[0]] * 5  # the same articles held out in every language
