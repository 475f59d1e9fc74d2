"""Real training end to end: MiniLM learns, executors agree, resume is exact, real data runs."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from conftest import (
    PROJECT_ROOT,
    STRATEGY_SCENARIOS,
    interrupt_at_append,
    real_scenario_dict,
    tiny_run_overrides,
)

from simulator.executors import InlineExecutor
from simulator.experiment import load_resumable, prepare_out, run_scenario
from simulator.methods.base import CodecBase, CodecContext
from simulator.methods.packing import OVERHEAD
from simulator.recorder import ArmRecorder, foreign_entries
from simulator.scenario import load_scenario
from simulator.training.base import LocalResult
from simulator.training.real import RealTrainer
from simulator.training.task import RealTask

pytestmark = pytest.mark.slow
TABLES = ("rounds.csv", "clients.csv", "evals.csv", "partition.csv", "summary.json")


def _run(write_scenario, raw: dict, out: Path, *overrides: str) -> list[Path]:
    path = write_scenario(raw)
    scenario = load_scenario(path, overrides)
    prepare_out(out, path, scenario)
    return run_scenario(scenario, out, progress=False)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _evals(folder: Path, metric: str) -> list[float]:
    return [float(r["value"]) for r in _rows(folder / "evals.csv") if r["metric"] == metric]


def test_minilm_learns_the_embedded_task(write_scenario, tmp_path):
    raw = real_scenario_dict(
        "minilm",
        server={"rounds": 6},
        evaluation={"every": 3, "targets": [0.6]},
    )
    raw["training"]["data"] = {"kind": "synthetic", "samples": 800, "eval_samples": 200}
    raw["training"]["local"] = {"steps": 8, "batch_size": 8, "seq_len": 48, "lr": 2e-3}
    (arm,) = _run(write_scenario, raw, tmp_path / "run")
    accuracy = _evals(arm, "accuracy")
    assert accuracy[0] < 0.4  # chance is 0.25 over four classes
    assert accuracy[-1] >= 0.7
    summary = json.loads((arm / "summary.json").read_text())
    assert summary["mode"] == "real" and summary["targets"][0]["reached"]
    rows = _rows(arm / "clients.csv")
    ok = [r for r in rows if r["status"] == "ok"]
    assert {int(r["uplink_bytes"]) for r in ok} == {OVERHEAD + 2 * (24 * 8 * 384 + 4 * 384 + 4)}
    assert all(float(r["compute_end_s"]) > float(r["compute_start_s"]) for r in ok)


@pytest.mark.parametrize(
    "executor",
    [
        "process",
        pytest.param(
            "ray",
            marks=pytest.mark.skipif(
                importlib.util.find_spec("ray") is None, reason="Ray not installed (extra 'ray')"
            ),
        ),
    ],
)
def test_executors_give_identical_files(write_scenario, tiny_models, tmp_path, executor):
    raw = real_scenario_dict(tiny_models["bert"])
    inline = _run(write_scenario, raw, tmp_path / "inline")
    other = _run(
        write_scenario,
        raw,
        tmp_path / executor,
        f"training.executor={executor}",
        "training.workers=2",
    )
    for a, b in zip(inline, other, strict=True):
        for name in TABLES[:-1]:
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
        with np.load(a / "state-r3.npz") as sa, np.load(b / "state-r3.npz") as sb:
            np.testing.assert_array_equal(sa["global"], sb["global"])


def test_executors_agree_on_the_real_minilm_weights(write_scenario, tmp_path):
    """Real weights, where float sums do depend on the torch thread count: inline and a pool
    of two workers use the scenario's training.threads alike, so evals and adapter agree to
    the byte (before, inline trained with the host's threads and workers with 1)."""
    raw = real_scenario_dict("minilm", server={"rounds": 2})
    raw["population"] = {"clients": 4, "per_round": 2, "mix": {"mid_phone": 1}}
    raw["training"]["data"] = {"kind": "synthetic", "samples": 200, "eval_samples": 64}
    raw["training"]["local"] = {"steps": 2, "batch_size": 8, "seq_len": 32, "lr": 2e-3}
    raw["training"]["threads"] = 2
    (inline,) = _run(write_scenario, raw, tmp_path / "inline")
    (pool,) = _run(
        write_scenario, raw, tmp_path / "pool", "training.executor=process", "training.workers=2"
    )
    for name in ("evals.csv", "clients.csv"):
        assert (inline / name).read_bytes() == (pool / name).read_bytes(), name
    with np.load(inline / "state-r2.npz") as a, np.load(pool / "state-r2.npz") as b:
        np.testing.assert_array_equal(a["global"], b["global"])
        size = a["global"].size
    manifest = json.loads((pool / "manifest.json").read_text())
    assert manifest["torch_threads"] == 2
    assert manifest["trainable_parameters"] == size  # the count survives without the states
    # which of the 200 examples every evaluation scored: all 40 held out (eval_samples 64)
    rows = manifest["evaluation_rows"]
    assert len(rows) == 40 and rows == sorted(set(rows)) and rows[0] >= 0 and rows[-1] < 200


def test_resume_after_interruption_is_exact(write_scenario, tiny_models, tmp_path, monkeypatch):
    raw = real_scenario_dict(
        tiny_models["bert"],
        server={"rounds": 4},
        methods=[
            {"name": "ffa", "freeze_a": True},
            {"name": "topk-ef", "codec": "topk", "codec_options": {"ratio": 0.2}},
        ],
    )
    reference = _run(write_scenario, raw, tmp_path / "ref")
    # arm 1 done (1 + 4 appends), 2 rounds into arm 2, whose clients hold residuals
    interrupt_at_append(monkeypatch, 5 + 3, lambda: _run(write_scenario, raw, tmp_path / "cut"))
    cut = tmp_path / "cut"
    resumed = run_scenario(load_resumable(cut)[0], cut, resume=True, progress=False)
    for a, b in zip(reference, resumed, strict=True):
        for name in TABLES:
            assert (a / name).read_bytes() == (b / name).read_bytes(), (a.name, name)


def test_final_adapter_loads_with_peft_and_scores_the_same(write_scenario, tiny_models, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    from simulator.training.data import load_data, tokenize
    from simulator.training.models import load_tokenizer

    (arm,) = _run(write_scenario, real_scenario_dict(tiny_models["bert"]), tmp_path / "run")
    labels = json.loads((arm / "adapter" / "labels.json").read_text())
    assert labels["id2label"] == {str(c): f"class{c}" for c in range(4)}
    base = AutoModelForSequenceClassification.from_pretrained(tiny_models["bert"], **labels)
    model = PeftModel.from_pretrained(base, arm / "adapter").eval()
    scenario = load_scenario(write_scenario(real_scenario_dict(tiny_models["bert"])))
    data = load_data(scenario.training.data, "classification", scenario.seed)
    tokens = tokenize(data, load_tokenizer(scenario.training), 32)
    rows = torch.from_numpy(data.validation)
    with torch.no_grad():
        logits = model(
            input_ids=tokens.input_ids[rows], attention_mask=tokens.attention_mask[rows]
        ).logits
    accuracy = float((logits.argmax(-1) == tokens.labels[rows]).float().mean())
    assert accuracy == pytest.approx(_evals(arm, "accuracy")[-1])


def test_pubmedqa_short_run(write_scenario, tiny_models, shared_datasets, tmp_path):
    raw = real_scenario_dict(tiny_models["bert"], server={"rounds": 2})
    raw["population"]["clients"] = 10
    raw["training"]["data"] = {
        "kind": "pubmedqa",
        "path": str(shared_datasets / "pubmedqa" / "ori_pqal.json"),
        "eval_samples": 100,
    }
    raw["training"]["partition"] = {"kind": "dirichlet", "alpha": 0.3}
    raw["training"]["local"] = {"steps": 2, "batch_size": 4, "seq_len": 64}
    (arm,) = _run(write_scenario, raw, tmp_path / "run")
    rows = _rows(arm / "partition.csv")
    assert len(rows) == 10 and list(rows[0])[2:] == ["yes", "no", "maybe"]
    assert sum(int(r["samples"]) for r in rows) == 800  # 1000 records, 20% held out
    assert len(_evals(arm, "accuracy")) == 3


def test_causal_lm_run_reports_perplexity(write_scenario, tiny_models, tmp_path):
    text = tmp_path / "text.jsonl"
    words = ("river", "stone", "cloud", "field")
    lines = [f'{{"text": "the {a} and the {b} met by the {a}"}}' for a in words for b in words]
    text.write_text("\n".join(lines * 5) + "\n")
    raw = real_scenario_dict(tiny_models["gpt2"], evaluation={"targets": [1e9]})
    raw["training"].update(
        task="causal_lm",
        data={"kind": "jsonl", "path": str(text)},
        partition={"kind": "iid"},
    )
    (arm,) = _run(write_scenario, raw, tmp_path / "run")
    perplexity = _evals(arm, "perplexity")
    assert len(perplexity) == 4 and perplexity[-1] < perplexity[0]
    nll = _evals(arm, "nll")
    assert perplexity[-1] == pytest.approx(np.exp(nll[-1]))
    summary = json.loads((arm / "summary.json").read_text())
    assert summary["targets"][0]["metric"] == "perplexity" and summary["targets"][0]["round"] == 0


def test_damaged_messages_are_rejected_counted_and_the_run_goes_on(
    write_scenario, tiny_models, tmp_path
):
    raw = real_scenario_dict(
        tiny_models["bert"],
        server={"rounds": 4},
        faults={"corrupt": 0.3, "truncate": 0.3},
        methods=[{"name": "fstq", "codec": "fstq", "token_policy": "fisher"}],
    )
    (arm,) = _run(write_scenario, raw, tmp_path / "run")
    clients = _rows(arm / "clients.csv")
    corrupt = [c for c in clients if c["status"] == "corrupt"]
    assert corrupt and any(c["status"] == "ok" for c in clients)
    assert all(int(c["uplink_bytes"]) > 0 for c in corrupt)
    rounds = _rows(arm / "rounds.csv")
    assert sum(int(r["corrupt"]) for r in rounds) == len(corrupt)
    assert len(_evals(arm, "accuracy")) == 5
    assert foreign_entries(arm.parent) == []  # every file a real arm writes is known as ours


def test_fed_fstq_sends_fewer_bytes_than_dense(write_scenario, tiny_models, tmp_path):
    raw = real_scenario_dict(
        tiny_models["bert"],
        methods=[
            {"name": "fp16"},
            {
                "name": "fstq-link",
                "codec": "fstq",
                "codec_options": {"budget": "link", "upload_s": 0.0005},
                "token_policy": "fisher",
                "token_options": {"refresh": 2},
            },
        ],
    )
    dense, fstq = _run(write_scenario, raw, tmp_path / "run")
    sizes = {
        arm.name: [
            int(c["uplink_bytes"]) for c in _rows(arm / "clients.csv") if c["status"] == "ok"
        ]
        for arm in (dense, fstq)
    }
    assert max(sizes["fstq-link"]) < min(sizes["fp16"])
    # link-aware: 0.5 ms of an 8 Mbps uplink (no latency here) caps every message at 500 B
    assert max(sizes["fstq-link"]) <= 500 and max(sizes["fstq-link"]) > 400


class RecordingCodec(CodecBase):
    """A user codec named by `module:Class`: fp16, remembering the length of every message."""

    from simulator.methods.dense import DenseFP16 as _inner

    name, codec_id, Options = "recording", 42, _inner.Options
    sent: ClassVar[list[int]] = []

    def __init__(self, options) -> None:
        self.inner = self._inner(options)

    def encode(self, update, context) -> bytes:
        message = self.inner.encode(update, context)
        RecordingCodec.sent.append(len(message))
        return message

    def decode(self, message, context):
        return self.inner.decode(message, context)


def test_recorded_uplink_bytes_are_len_of_the_messages(write_scenario, tiny_models, tmp_path):
    RecordingCodec.sent.clear()
    raw = real_scenario_dict(
        tiny_models["bert"], methods=[{"name": "mine", "codec": "test_real:RecordingCodec"}]
    )
    (arm,) = _run(write_scenario, raw, tmp_path / "run")
    trained = [c for c in _rows(arm / "clients.csv") if c["compute_start_s"]]
    assert [int(c["uplink_bytes"]) for c in trained] == RecordingCodec.sent


@pytest.mark.parametrize("name", STRATEGY_SCENARIOS)
def test_shipped_strategy_scenarios_run_with_real_training(name, tiny_models, tmp_path):
    real = real_scenario_dict(tiny_models["bert"])
    sections = {"training": real["training"], "methods": real["methods"]}
    if name == "deadline":  # a tiny model beats any fixed deadline: close at the median
        sections["server"] = {"strategy": "deadline", "rounds": 3, "percentile": 50}
    scenario = load_scenario(
        PROJECT_ROOT / "scenarios" / f"{name}.toml", tiny_run_overrides(name, sections)
    )
    (arm,) = run_scenario(scenario, tmp_path / name, progress=False)
    summary = json.loads((arm / "summary.json").read_text())
    assert (summary["mode"], summary["rounds"]) == ("real", 3)
    assert len(_evals(arm, "accuracy")) == 4
    clients = _rows(arm / "clients.csv")
    statuses = {c["status"] for c in clients}
    expected = {"deadline": "late", "overselect": "cancelled", "fedbuff": "cancelled"}
    assert name not in expected or expected[name] in statuses
    sent = [c for c in clients if c["status"] == "ok"]
    assert sent and all(int(c["uplink_bytes"]) > OVERHEAD for c in sent)
    assert (arm / "adapter" / "adapter_config.json").exists()


class RecordingExecutor:
    """The inline executor, remembering every job it ran."""

    def __init__(self, task) -> None:
        self.inner = InlineExecutor(task)
        self.jobs: list = []

    def run(self, arm, jobs):
        self.jobs += jobs
        return self.inner.run(arm, jobs)


def _trainers(write_scenario, tiny_models, tmp_path, methods: list[dict]) -> dict:
    raw = real_scenario_dict(tiny_models["bert"], methods=methods)
    scenario = load_scenario(write_scenario(raw))
    task = RealTask(scenario)
    executor = RecordingExecutor(task)
    return {
        m.name: RealTrainer(task, executor, m, ArmRecorder(tmp_path / m.name, {}, resume=False))
        for m in scenario.methods
    }


def test_downlink_codec_sets_the_broadcast_clients_train_from(
    write_scenario, tiny_models, tmp_path
):
    methods = [
        {"name": "fp16"},
        {"name": "fp32", "downlink_codec": "fp32"},
        {"name": "q2", "downlink_codec": "qsgd", "downlink_codec_options": {"bits": 2}},
    ]
    trainers = _trainers(write_scenario, tiny_models, tmp_path, methods)
    exact = trainers["fp32"].server.weights
    assert trainers["fp16"].downlink_bytes(0) == OVERHEAD + 2 * exact.size
    assert trainers["fp32"].downlink_bytes(5) == OVERHEAD + 4 * exact.size
    assert trainers["q2"].downlink_bytes(0) < trainers["fp16"].downlink_bytes(0) // 4
    np.testing.assert_array_equal(trainers["fp32"].server.broadcast()[1], exact)
    fp16 = exact.astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(trainers["fp16"].server.broadcast()[1], fp16)
    assert not np.array_equal(fp16, exact)  # the initial A matrices are not fp16 numbers
    lossy = trainers["q2"]
    lossy.begin_round([(3, 1), (5, 1)], lambda client, seconds: 0)
    received = lossy.server.broadcast()[1]
    assert np.abs(received - exact).max() > 1e-3  # 2-bit levels
    jobs = lossy.executor.jobs
    assert [j.client for j in jobs] == [3, 5]
    assert all(np.array_equal(j.global_flat, received) for j in jobs)


def test_weighted_aggregation_of_decoded_updates(write_scenario, tiny_models, tmp_path):
    methods = [{"name": "fp32", "codec": "fp32"}]
    trainer = _trainers(write_scenario, tiny_models, tmp_path, methods)["fp32"]
    context = CodecContext(trainer.server.groups)
    size = trainer.server.weights.size
    up = trainer.codec.encode(np.full(size, 1.0, np.float32), context)
    down = trainer.codec.encode(np.full(size, -2.0, np.float32), context)
    before = trainer.server.weights.copy()
    received = [(0, LocalResult(up, 30)), (1, LocalResult(b"junk", 5)), (0, LocalResult(down, 10))]
    assert trainer.aggregate(4, received, [1.0, 1.0, 0.5]) == {1}  # a position, not a client
    # (30·1 · 1 + 10·0.5 · -2) / (30·1 + 10·0.5) = 20 / 35
    np.testing.assert_allclose(trainer.server.weights - before, 20 / 35, rtol=1e-5)
    assert trainer.server.version == 4
    # the next broadcast is the new global adapter, in the default fp16 downlink
    fp16 = trainer.server.weights.astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(trainer.server.broadcast()[1], fp16)


def test_lossy_downlink_changes_training(write_scenario, tiny_models, tmp_path):
    methods = [
        {"name": "fp16"},
        {"name": "q2", "downlink_codec": "qsgd", "downlink_codec_options": {"bits": 2}},
    ]
    dense, lossy = _run(
        write_scenario, real_scenario_dict(tiny_models["bert"], methods=methods), tmp_path / "run"
    )
    assert _evals(dense, "loss")[0] == _evals(lossy, "loss")[0]  # the same initial adapter
    assert _evals(dense, "loss")[1:] != _evals(lossy, "loss")[1:]
    down = {arm.name: _rows(arm / "rounds.csv")[0]["downlink_bytes"] for arm in (dense, lossy)}
    assert int(down["q2"]) < int(down["fp16"])


def test_fedbuff_real_training_resumes_exactly(write_scenario, tiny_models, tmp_path, monkeypatch):
    raw = real_scenario_dict(
        tiny_models["bert"],
        server={"strategy": "fedbuff", "rounds": 4, "concurrency": 4, "buffer_size": 2},
    )
    (reference,) = _run(write_scenario, raw, tmp_path / "ref")
    versions = {c["version"] for c in _rows(reference / "clients.csv")}
    assert {"0", "1"} <= versions
    # two server updates written, the third crashes
    interrupt_at_append(monkeypatch, 1 + 3, lambda: _run(write_scenario, raw, tmp_path / "cut"))
    cut = tmp_path / "cut"
    in_flight = json.loads((cut / "fp16" / "checkpoint.json").read_text())["state"]["server"]
    assert any(rec["result"] and rec["result"]["bytes"] for rec in in_flight["in_flight"])
    (resumed,) = run_scenario(load_resumable(cut)[0], cut, resume=True, progress=False)
    for name in TABLES:
        assert (reference / name).read_bytes() == (resumed / name).read_bytes(), name
