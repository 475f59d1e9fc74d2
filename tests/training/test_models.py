"""Models: names resolve, the flat adapter has a stable documented layout, save/load works."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from simulator.errors import ModelError
from simulator.scenario import RealTraining
from simulator.training.models import load_model, resolve_model


def spec(model: str, **extra) -> RealTraining:
    raw = {"mode": "real", "model": model, "device": "cpu", "data": {"kind": "synthetic"}}
    return RealTraining.model_validate({**raw, **extra})


def test_alias_and_folders_resolve(minilm_path: Path, tmp_path: Path):
    assert Path(resolve_model("minilm")) == minilm_path
    assert resolve_model(str(minilm_path)) == str(minilm_path.resolve())
    assert resolve_model("org/model-name") == "org/model-name"  # a hub id, left to transformers
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model("./no/such/folder")
    with pytest.raises(ModelError, match="no config.json"):
        resolve_model(str(tmp_path))


def test_unreachable_hub_id_is_a_clear_error():
    with pytest.raises(ModelError, match="cannot load"):
        load_model(spec("nobody/no-such-model-xyz"), 2, 0, seed=0)


def test_minilm_flat_layout_is_documented_order(minilm_path):
    model = load_model(spec("minilm"), num_labels=4, pad_token_id=0, seed=0)
    names = [g.name for g in model.groups]
    assert names[:4] == [
        "bert.encoder.layer.0.attention.self.query.lora_A",
        "bert.encoder.layer.0.attention.self.query.lora_B",
        "bert.encoder.layer.0.attention.self.value.lora_A",
        "bert.encoder.layer.0.attention.self.value.lora_B",
    ]
    assert names[-2:] == ["classifier.weight", "classifier.bias"]
    assert len(names) == 6 * 4 + 2
    # 24 LoRA matrices of 8 x 384 plus the 4 x 384 head and its bias
    assert model.size == 24 * 8 * 384 + 4 * 384 + 4
    offsets = [g.offset for g in model.groups]
    assert offsets == sorted(offsets) and offsets[0] == 0
    assert all(
        a.offset + a.size == b.offset for a, b in zip(model.groups, model.groups[1:], strict=False)
    )


def test_set_get_round_trip_and_seeded_init():
    a = load_model(spec("minilm"), 3, 0, seed=5)
    b = load_model(spec("minilm"), 3, 0, seed=5)
    np.testing.assert_array_equal(a.get_flat(), b.get_flat())
    flat = np.random.default_rng(0).normal(size=a.size).astype(np.float32)
    a.set_flat(flat)
    np.testing.assert_array_equal(a.get_flat(), flat)
    with pytest.raises(ValueError):
        a.set_flat(flat[:-1])


def test_freeze_a_keeps_a_out_of_the_vector_and_at_its_init(tiny_models):
    model = load_model(spec(str(tiny_models["bert"])), 2, 0, seed=1)
    full = model.size
    a_before = {n: p.clone() for n, p in model.model.named_parameters() if "lora_A" in n}
    model.configure(freeze_a=True)
    assert not any("lora_A" in g.name for g in model.groups)
    assert model.size == full - sum(p.numel() for p in a_before.values())
    model.set_flat(np.ones(model.size, dtype=np.float32))
    for name, param in model.model.named_parameters():
        if "lora_A" in name:
            assert not param.requires_grad
            assert torch.equal(param, a_before[name])


def test_saved_adapter_loads_with_peft(tiny_models, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    model = load_model(spec(str(tiny_models["bert"])), 2, 0, seed=2)
    flat = np.random.default_rng(1).normal(0, 0.1, model.size).astype(np.float32)
    model.save_adapter(flat, tmp_path / "adapter")
    base = AutoModelForSequenceClassification.from_pretrained(tiny_models["bert"], num_labels=2)
    loaded = PeftModel.from_pretrained(base, tmp_path / "adapter")
    ids = torch.tensor([[101, 2054, 2003, 102]])
    model.model.eval()
    loaded.eval()
    with torch.no_grad():
        expected = model.model(input_ids=ids).logits
        got = loaded(input_ids=ids).logits
    torch.testing.assert_close(got, expected)


def test_causal_lm_loads_with_default_targets(tiny_models):
    data = {"kind": "jsonl", "path": "unused.jsonl"}
    causal = spec(str(tiny_models["gpt2"]), task="causal_lm", data=data, partition={"kind": "iid"})
    model = load_model(causal, 0, 0, seed=0)
    assert all("attn.c_attn.lora_" in g.name for g in model.groups)
    assert len(model.groups) == 2 * 2
