"""Evaluation views (simulator/training/evaluate.py): per-group metrics from the same pass,
per-client evaluation on held-out shards, QA metrics, and what a run writes for them."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from conftest import real_scenario_dict

from simulator.cache import ReplayCache
from simulator.errors import DataError
from simulator.experiment import prepare_out, run_scenario
from simulator.scenario import Evaluation, RealTraining, load_scenario
from simulator.training.data import TextData, load_data, tokenize
from simulator.training.evaluate import (
    answer_set,
    candidate_answers,
    client_holdout,
    client_summary,
    evaluate,
    evaluate_views,
    generation_metrics,
    view_keys,
)
from simulator.training.models import load_model, load_tokenizer


def _spec(model, task: str, **data) -> RealTraining:
    return RealTraining.model_validate(
        {"mode": "real", "model": str(model), "task": task, "data": data, "device": "cpu"}
    )


@pytest.mark.parametrize("task", ["causal_lm", "classification"])
def test_each_group_scores_as_its_rows_alone_and_the_overall_value_is_unchanged(tiny_models, task):
    """Split from one pass, a group's metrics equal an evaluation of only its rows (NLL: its own
    tokens' mean, not a mean of row means), and the overall metrics are those of `evaluate`."""
    model_path = tiny_models["llama" if task == "causal_lm" else "bert"]
    spec = _spec(model_path, task, kind="synthetic", samples=160, eval_samples=30)
    data = load_data(spec.data, task, seed=0)
    tokenizer = load_tokenizer(spec)
    tokens = tokenize(data, tokenizer, seq_len=64)
    model = load_model(spec, len(data.label_names), tokenizer.pad_token_id, seed=0)
    with torch.no_grad():
        for param in model.params:
            param.normal_(0, 0.3)
    answers = None
    if task == "causal_lm":
        answers = answer_set(candidate_answers(data, spec), data, tokenizer, tokens)
        assert answers is not None
    keys = view_keys(data, "synthetic", "group")
    overall, views = evaluate_views(model, tokens, data.validation, 7, answers, keys)
    assert overall == evaluate(model, tokens, data.validation, 7, answers)
    assert len(views) >= 2 and set(views) <= set(data.group_names)
    for name, metrics in views.items():
        rows = data.validation[keys == name]
        alone = evaluate(model, tokens, rows, 7, answers)
        assert metrics.keys() == alone.keys()
        for metric, value in alone.items():
            assert metrics[metric] == pytest.approx(value, rel=1e-5), (name, metric)
    first = "nll" if task == "causal_lm" else "accuracy"
    assert len({round(m[first], 6) for m in views.values()}) > 1  # groups really differ


def test_a_view_the_data_cannot_give_names_the_data_and_the_fix(tiny_models):
    spec = _spec(tiny_models["llama"], "causal_lm", kind="synthetic", samples=40)
    data = load_data(spec.data, "causal_lm", seed=0)
    plain = TextData("notes.csv", data.texts, None, (), None, (), data.train, data.validation)
    with pytest.raises(DataError, match=r"notes.csv: evaluation.by: 'group'.*csv data.*data.group"):
        view_keys(plain, "csv", "group")
    labels = view_keys(data, "synthetic", "label")
    assert list(labels) == [data.label_names[data.labels[i]] for i in data.validation]


def test_each_client_holds_out_a_seeded_share_of_its_own_partition():
    parts = [np.arange(0, 10), np.arange(10, 13), np.arange(13, 15)]
    on = Evaluation(clients_every=1, client_holdout=0.2)
    kept, held = client_holdout(parts, on, seed=3, source="x")
    assert [len(h) for h in held] == [2, 1, 1]  # 20 %, at least one, one left to train on
    for part, k, h in zip(parts, kept, held, strict=True):
        assert np.array_equal(np.sort(np.concatenate([k, h])), part)
        assert not set(k) & set(h) and list(k) == sorted(k)
    again = client_holdout(parts, on, seed=3, source="x")[1]
    assert all(np.array_equal(a, b) for a, b in zip(held, again, strict=True))
    other = client_holdout([np.arange(100)], on, seed=4, source="x")[1][0]
    assert not np.array_equal(other, client_holdout([np.arange(100)], on, 3, "x")[1][0])
    assert client_holdout(parts, Evaluation(), seed=3, source="x") == (parts, [])
    with pytest.raises(DataError, match="client 1 has 1 training example.*min_samples"):
        client_holdout([np.arange(5), np.array([7])], on, seed=3, source="x")


def test_the_client_summary_takes_the_worst_decile_in_each_metric_direction():
    clients = {str(c): {"nll": float(c), "accuracy": c / 10} for c in range(11)}
    summary = client_summary(clients)
    assert summary["clients:mean"] == {"nll": 5.0, "accuracy": 0.5}
    assert summary["clients:worst10"]["nll"] == pytest.approx(9.0)  # 90th percentile of a loss
    assert summary["clients:worst10"]["accuracy"] == pytest.approx(0.1)  # 10th of an accuracy
    assert summary["clients:std"]["nll"] == pytest.approx(np.std(np.arange(11)))


def test_qa_answers_get_squad_exact_match_and_token_f1():
    texts = ["The Eiffel Tower", "नई दिल्ली", "1889 in Paris"]
    data = TextData("qa", texts, None, (), None, (), np.array([], int), np.arange(3), texts)
    answers = ["eiffel tower.", "नई दिल्ली", "Paris"]
    plain = generation_metrics(answers, data, np.arange(3), decisions=False)
    assert set(plain) == {"rouge_l"}
    scored = generation_metrics(answers, data, np.arange(3), decisions=False, qa=True)
    assert scored["exact_match"] == pytest.approx(2 / 3)  # articles, case, punctuation dropped
    assert scored["token_f1"] == pytest.approx((1 + 1 + 2 * (1 / 1) * (1 / 3) / (1 + 1 / 3)) / 3)


def _rows(path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_a_run_writes_group_and_client_views_training_stats_and_a_report(
    write_scenario, tiny_models, tmp_path
):
    raw = real_scenario_dict(
        tiny_models["bert"],
        server={"rounds": 2},
        evaluation={"targets": [0.5], "by": "group", "clients_every": 2},
        methods=[{"name": "fp16", "codec": "fp16"}, {"name": "ef", "codec": "signsgd"}],
    )
    path = write_scenario(raw)
    scenario = load_scenario(path)
    cache = ReplayCache(tmp_path / "cache")
    runs = {}
    for name in ("cold", "warm"):
        out = tmp_path / name
        prepare_out(out, path, scenario)
        runs[name] = run_scenario(scenario, out, progress=False, cache=cache)
    for cold, warm in zip(runs["cold"], runs["warm"], strict=True):
        for table in ("clients.csv", "evals.csv", "client_evals.csv"):
            assert (cold / table).read_bytes() == (warm / table).read_bytes(), table
    arm = runs["cold"][0]
    evals = _rows(arm / "evals.csv")
    overall = [e for e in evals if not e["group"]]
    assert [(e["round"], e["metric"]) for e in overall] == [
        (str(r), m) for r in range(3) for m in ("accuracy", "loss")
    ]
    groups = {e["group"] for e in evals if e["group"] and ":" not in e["group"]}
    assert groups and groups <= {f"topic{t}" for t in range(10)}
    summaries = [e for e in evals if e["group"].startswith("clients:")]
    assert {(e["round"], e["group"]) for e in summaries} == {
        (r, s) for r in ("0", "2") for s in ("clients:mean", "clients:worst10", "clients:std")
    }
    per_client = _rows(arm / "client_evals.csv")
    assert {(r["round"], r["client"]) for r in per_client} == {
        (r, str(c)) for r in ("0", "2") for c in range(8)
    }
    losses = [float(r["value"]) for r in per_client if r["round"] == "2" and r["metric"] == "loss"]
    mean = next(e for e in summaries if e["round"] == "2" and e["group"] == "clients:mean"
                and e["metric"] == "loss")  # fmt: skip
    assert float(mean["value"]) == pytest.approx(np.mean(losses))
    summary = json.loads((arm / "summary.json").read_text())
    assert summary["final"] == {e["metric"]: float(e["value"]) for e in overall[-2:]}
    manifest = json.loads((arm / "manifest.json").read_text())
    assert manifest["host_seconds_math"]["client_evaluation"] > 0
    trained = [c for c in _rows(arm / "clients.csv") if c["status"] == "ok"]
    assert trained and all(float(c["train_loss_first"]) > 0 for c in trained)
    assert all(int(c["tokens_trained"]) > 0 and float(c["flop"]) > 0 for c in trained)
    from analysis.report import write_report

    report = tmp_path / "report"
    md = write_report(runs["cold"], report, "fp16", 0.5, "accuracy")[0].read_text()
    assert "Final accuracy per group value" in md and "| ef |" in md
    assert "Per-client evaluation of the global model" in md and "worst decile" in md
    assert (report / "quality-by-group.png").is_file()
    assert (report / "quality-by-client.png").is_file()
    raw_csv = _rows(report / "report.csv")
    assert "final_clients_worst10_mean" in raw_csv[0]
