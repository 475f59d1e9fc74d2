"""Instruction data end to end on a tiny Llama: response-only targets, NLL, ROUGE-L of greedy
generations, the saved samples and adapter."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from conftest import real_scenario_dict

from simulator.experiment import prepare_out, run_scenario
from simulator.scenario import FileData, load_scenario
from simulator.training.data import ANSWER_WORDS, load_data, prompt_text, tokenize
from simulator.training.evaluate import generation_metrics
from simulator.training.models import load_tokenizer

pytestmark = pytest.mark.slow


def _spec(tiny_models, **data):
    from simulator.scenario import RealTraining

    return RealTraining.model_validate(
        {
            "mode": "real",
            "model": str(tiny_models["llama"]),
            "task": "causal_lm",
            "data": data,
            "partition": {"kind": "iid"},
        }
    )


def test_only_response_tokens_are_targets_and_long_contexts_lose_their_middle(
    tiny_models, tmp_path
):
    path = tmp_path / "qa.jsonl"
    rows = [
        {"q": f"question {i}\nContext: " + "filler " * (60 if i == 0 else 3), "a": f"answer {i}"}
        for i in range(10)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = _spec(tiny_models, kind="jsonl", path=str(path), prompt="q", response="a")
    data = load_data(spec.data, "causal_lm", seed=0)
    assert data.prompts[3].startswith("question 3") and data.texts[3] == "answer 3"
    tokenizer = load_tokenizer(spec)
    tokens = tokenize(data, tokenizer, seq_len=32)
    for row in range(10):
        length = int(tokens.prompt_lengths[row])
        targets = tokens.targets[row]
        real = int(tokens.attention_mask[row].sum())
        assert targets[:length].sum() == 0 and targets[length:real].all()
        response = tokenizer.decode(tokens.input_ids[row, length:real], skip_special_tokens=True)
        assert response.replace(" ", "") == data.texts[row].replace(" ", "")
    first = tokenizer.decode(tokens.input_ids[0, : int(tokens.prompt_lengths[0])])
    # only the context line is cut (from its middle): the question and the template's end stay
    assert first.startswith("question 0") and first.rstrip().endswith("answer :")
    assert first.count("filler") < 60 and int(tokens.attention_mask[0].sum()) == 32


def test_instruction_data_needs_prompt_and_response(tmp_path):
    with pytest.raises(ValueError, match="needs both prompt and response"):
        FileData(kind="jsonl", path="x.jsonl", prompt="q")


def test_prompts_use_the_chat_template_when_there_is_one(tiny_models):
    tokenizer = load_tokenizer(_spec(tiny_models, kind="synthetic"))
    assert prompt_text(tokenizer, "Hi?") == "Hi?\nAnswer: "
    tokenizer.chat_template = "{% for m in messages %}<u>{{ m['content'] }}</u>{% endfor %}<a>"
    assert prompt_text(tokenizer, "Hi?") == "<u>Hi?</u><a>"


def test_synthetic_and_pubmedqa_instruction_sets(tiny_models, shared_datasets):
    data = load_data(_spec(tiny_models, kind="synthetic", samples=40).data, "causal_lm", 0)
    assert data.texts[0] == f"The answer is {ANSWER_WORDS[data.labels[0]]}."
    assert "Answer with the class word" in data.prompts[0]
    path = shared_datasets / "pubmedqa" / "ori_pqal.json"
    med = load_data(_spec(tiny_models, kind="pubmedqa", path=str(path)).data, "causal_lm", 0)
    assert med.texts[0].split(".")[0].lower() in ("yes", "no", "maybe")
    assert "Question:" in med.prompts[0] and len(med.texts[0]) > 40  # decision + long answer


def test_rouge_l_and_decision_accuracy_by_hand(tiny_models, shared_datasets):
    path = shared_datasets / "pubmedqa" / "ori_pqal.json"
    med = load_data(_spec(tiny_models, kind="pubmedqa", path=str(path)).data, "causal_lm", 0)
    rows = med.validation[:2]
    answers = [med.texts[rows[0]], "Maybe. Nothing in common at all here."]
    metrics = generation_metrics(answers, med, rows, decisions=True)
    assert 0.5 < metrics["rouge_l"] < 1.0  # one exact answer (1.0), one far off
    truth = med.texts[rows[1]].split(".")[0].lower()
    assert metrics["decision_accuracy"] == (1.0 if truth == "maybe" else 0.5)


def test_llm_run_writes_per_round_nll_and_rouge_and_a_loadable_adapter(
    write_scenario, tiny_models, tmp_path
):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    raw = real_scenario_dict(
        tiny_models["llama"],
        server={"rounds": 2},
        evaluation={"every": 1, "generate_every": 2, "generate_samples": 4, "max_new_tokens": 6},
    )
    raw["training"] |= {"task": "causal_lm", "partition": {"kind": "dirichlet", "alpha": 0.5}}
    raw["training"]["data"] = {"kind": "synthetic", "samples": 120, "eval_samples": 16}
    raw["training"]["local"] = {"steps": 2, "batch_size": 4, "seq_len": 64, "lr": 3e-3}
    raw["methods"] = [
        {"name": "fp16", "codec": "fp16"},
        {
            "name": "fstq",
            "codec": "fstq",
            "token_policy": "fisher",
            "token_options": {"refresh": 2},
        },
    ]
    path = write_scenario(raw)
    scenario = load_scenario(path)
    assert scenario.metrics() == ("perplexity", "nll", "rouge_l")
    out = tmp_path / "run"
    prepare_out(out, path, scenario)
    for arm in run_scenario(scenario, out, progress=False):
        with open(arm / "evals.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        by_metric = {}
        for row in rows:
            by_metric.setdefault(row["metric"], []).append(int(row["round"]))
        assert by_metric["nll"] == [0, 1, 2] and by_metric["rouge_l"] == [0, 2]
        saved = json.loads((arm / "generations.json").read_text())["rounds"]
        assert [g["round"] for g in saved] == [0, 2]  # every generating round, not the last
        assert all(len(g["samples"]) == 4 for g in saved)
        assert {"prompt", "reference", "answer"} <= set(saved[-1]["samples"][0])
    from analysis.report import write_report

    md = write_report(out, tmp_path / "report", "fp16", 1.0, "nll")[0].read_text()
    assert "Generated answers (greedy, held-out prompts)" in md
    assert md.count("| fstq | 7 | 2 |") == 3  # the first three samples of each arm
    base = AutoModelForCausalLM.from_pretrained(tiny_models["llama"])
    model = PeftModel.from_pretrained(base, out / "fstq" / "adapter")
    ids = torch.tensor([[101, 2023, 2003]])
    assert model.generate(input_ids=ids, max_new_tokens=3, do_sample=False).shape == (1, 6)
    assert np.isfinite(float(rows[-1]["value"]))


def test_answer_ranking_accuracy_matches_a_hand_computation(tiny_models):
    """answer_accuracy from the NLL pass equals ranking each class word by its log-likelihood in
    its own forward pass (prompt + the shared "the answer is" + the candidate's word), and the
    majority rate is the held-out share of the most common class; the NLL is unchanged."""
    import torch.nn.functional as F

    from simulator.training.evaluate import answer_set, candidate_answers, evaluate
    from simulator.training.models import load_model

    spec = _spec(tiny_models, kind="synthetic", samples=120, eval_samples=20)
    data = load_data(spec.data, "causal_lm", seed=0)
    tokenizer = load_tokenizer(spec)
    tokens = tokenize(data, tokenizer, seq_len=64)
    model = load_model(spec, 0, tokenizer.pad_token_id, seed=0)
    with torch.no_grad():  # an adapter that makes the model prefer some words
        for param in model.params:
            param.normal_(0, 0.3)
    candidates = candidate_answers(data, spec)
    assert candidates[:2] == ["The answer is red.", "The answer is blue."]
    answers = answer_set(candidates, data, tokenizer, tokens)
    assert answers.offset == 3  # "the answer is" is shared; the class word decides
    metrics = evaluate(model, tokens, data.validation, 7, answers)
    model.model.eval()
    hits, nll, count = 0, 0.0, 0
    for row in data.validation:
        length = int(tokens.prompt_lengths[row])
        scores = []
        for word in ANSWER_WORDS[: len(data.label_names)]:
            answer = tokenizer(f"the answer is {word}", add_special_tokens=False)["input_ids"]
            ids = torch.cat([tokens.input_ids[row, :length], torch.tensor(answer)])[None]
            with torch.no_grad():
                logp = model.model(input_ids=ids).logits[0].log_softmax(-1)
            scores.append(float(sum(logp[length + i - 1, t] for i, t in enumerate(answer))))
        hits += int(np.argmax(scores) == data.labels[row])
        real = int(tokens.attention_mask[row].sum())
        ids = tokens.input_ids[row, :real][None]
        with torch.no_grad():
            logits = model.model(input_ids=ids).logits[0]
        nll += float(
            F.cross_entropy(logits[length - 1 : real - 1], ids[0, length:], reduction="sum")
        )
        count += real - length
    truth = data.labels[data.validation]
    assert metrics["answer_accuracy"] == pytest.approx(hits / len(truth))
    assert 0 < hits < len(truth)  # a ranking that is neither all right nor all wrong
    assert metrics["majority_rate"] == pytest.approx(np.bincount(truth).max() / len(truth))
    assert metrics["nll"] == pytest.approx(nll / count, rel=1e-5)


def test_answers_that_no_single_token_tells_apart_are_not_ranked(tiny_models):
    from simulator.training.evaluate import answer_set

    spec = _spec(tiny_models, kind="synthetic", samples=40)
    data = load_data(spec.data, "causal_lm", seed=0)
    tokenizer = load_tokenizer(spec)
    tokens = tokenize(data, tokenizer, seq_len=64)
    same = ["The answer is red.", "The answer is red."] * 2
    assert answer_set(same, data, tokenizer, tokens) is None
    other = ["It is red.", "It is blue.", "It is green.", "It is yellow."]
    assert answer_set(other, data, tokenizer, tokens) is None  # responses start otherwise


def test_generations_come_back_in_the_order_asked_whatever_the_batching(tiny_models):
    """Batches are sorted by prompt length (little left-padding), yet answer i is the answer to
    prompt i: the same as generating each prompt alone."""
    from simulator.training.evaluate import generate
    from simulator.training.models import load_model

    spec = _spec(tiny_models, kind="synthetic", samples=60)
    data = load_data(spec.data, "causal_lm", seed=0)
    tokenizer = load_tokenizer(spec)
    tokens = tokenize(data, tokenizer, seq_len=64)
    model = load_model(spec, 0, tokenizer.pad_token_id, seed=0)
    rows = data.validation[:6][::-1]
    lengths = tokens.prompt_lengths[torch.from_numpy(rows.copy())]
    assert len(set(lengths.tolist())) > 1  # the sorting has something to do
    batched = generate(model, tokenizer, tokens, rows, 5, batch_size=4)
    alone = [generate(model, tokenizer, tokens, rows[i : i + 1], 5, 1)[0] for i in range(6)]
    assert batched == alone and len(set(alone)) > 1


def test_a_shared_header_runs_once_and_changes_no_metric(tiny_models, monkeypatch):
    """The tokens every held-out row starts with, up to the first target, are run once
    (their keys and values shared by every batch); NLL and answer ranking equal the pass that
    runs every row whole. Rows that share too little (or a target too early) get no prefix."""
    from simulator.training import models
    from simulator.training.evaluate import answer_set, candidate_answers, evaluate
    from simulator.training.models import load_model

    spec = _spec(tiny_models, kind="synthetic", samples=120, eval_samples=20)
    data = load_data(spec.data, "causal_lm", seed=0)
    tokenizer = load_tokenizer(spec)
    tokens = tokenize(data, tokenizer, seq_len=64)
    model = load_model(spec, 0, tokenizer.pad_token_id, seed=0)
    with torch.no_grad():
        for param in model.params:
            param.normal_(0, 0.3)
    rows = torch.from_numpy(data.validation.copy())
    ids, targets = tokens.input_ids[rows], tokens.targets[rows]
    prefix = model.prefix(ids, targets)
    first_target = int(targets.long().argmax(dim=1).min())
    shared = next(t for t in range(ids.shape[1]) if not (ids[:, t] == ids[0, t]).all())
    assert prefix is not None and prefix.length == min(shared, first_target - 1) >= 8
    answers = answer_set(candidate_answers(data, spec), data, tokenizer, tokens)
    shared_pass = evaluate(model, tokens, data.validation, 7, answers)
    monkeypatch.setattr(models, "MIN_PREFIX", 10**6)
    assert model.prefix(ids, targets) is None
    whole_pass = evaluate(model, tokens, data.validation, 7, answers)
    assert shared_pass["nll"] == pytest.approx(whole_pass["nll"], rel=1e-6)
    assert shared_pass["answer_accuracy"] == whole_pass["answer_accuracy"]
    monkeypatch.undo()
    assert model.prefix(ids[:, 1:], targets[:, 1:]) is None or shared > 9
    early = targets.clone()
    early[:, 3] = 1  # a target among the first tokens: nothing may be shared before it
    assert model.prefix(ids, early) is None
