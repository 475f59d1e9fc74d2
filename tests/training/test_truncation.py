"""Truncation of instruction examples: only a context line is cut, from its middle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import PROJECT_ROOT
from transformers import AutoTokenizer

from simulator.errors import DataError
from simulator.scenario import load_scenario
from simulator.training.data import TextData, load_data, tokenize
from simulator.training.models import resolve_model

WORDS = " ".join(f"w{i}" for i in range(60))


def instructions(prompts: list[str], responses: list[str]) -> TextData:
    n = len(prompts)
    return TextData(
        source="notes.jsonl",
        texts=responses,
        labels=None,
        label_names=(),
        groups=None,
        group_names=(),
        train=np.arange(n),
        validation=np.arange(0),
        prompts=prompts,
    )


@pytest.fixture(scope="module")
def tokenizer(minilm_path: Path):
    return AutoTokenizer.from_pretrained(str(minilm_path))


def test_a_long_context_loses_its_middle_and_nothing_else(tokenizer):
    """Before: the prompt kept its tail, so the instruction at its start was cut away."""
    prompt = f"name the colour.\nContext: {WORDS}\nQuestion: which colour is it?"
    short = "name the colour.\nQuestion: which colour is it?"
    data = instructions([prompt, short], ["red", "blue"])
    tokens = tokenize(data, tokenizer, 48)
    row = tokens.input_ids[0][tokens.attention_mask[0].bool()]
    assert len(row) == 48
    text = tokenizer.decode(row)
    assert text.startswith("name the colour. context : w0 w1")
    assert "w58 w59 question : which colour is it? answer : red" in text
    assert "w30" not in text  # the middle of the context is what goes
    assert tokens.targets[0].sum() == len(tokenizer("red", add_special_tokens=False)["input_ids"])
    whole = tokenizer.decode(tokens.input_ids[1][tokens.attention_mask[1].bool()])
    assert whole == "name the colour. question : which colour is it? answer : blue"


def test_an_example_that_cannot_fit_names_itself_and_the_seq_len_it_needs(tokenizer):
    prompt = f"name the colour.\nQuestion: {WORDS}"  # no context line: nothing may be cut
    data = instructions(["name it.\nQuestion: which?", prompt], ["red", "blue"])
    with pytest.raises(DataError) as err:
        tokenize(data, tokenizer, 40)
    message = str(err.value)
    need = len(tokenizer(prompt + "\nAnswer: blue", add_special_tokens=False)["input_ids"])
    assert message.startswith("notes.jsonl: example 1 ")
    assert f"set training.local.seq_len to at least {need}" in message


def test_pubmedqa_keeps_the_question_at_the_study_seq_len(shared_datasets: Path):
    """Before: at seq_len 192 about 1 % of PubMedQA examples kept "Question:"."""
    path = shared_datasets / "pubmedqa" / "ori_pqal.json"
    scenario = load_scenario(
        PROJECT_ROOT / "scenarios" / "llm-pubmedqa.toml", [f"training.data.path={path}"]
    )
    data = load_data(scenario.training.data, "causal_lm", 0)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m"))
    tokens = tokenize(data, tokenizer, scenario.training.local.seq_len)
    kept = 0
    for i, prompt in enumerate(data.prompts):
        question = prompt.rsplit("\nQuestion: ", 1)[1]
        ids = tokens.input_ids[i, : int(tokens.prompt_lengths[i])]
        kept += f"\nQuestion: {question}" in tokenizer.decode(ids)
    assert kept / len(data.prompts) >= 0.99
