"""The FLOP model against a hand count for the MiniLM config (LoRA r = 8 on query and value)."""

from __future__ import annotations

from simulator.scenario import RealTraining
from simulator.training.flops import FlopModel
from simulator.training.models import load_model


def test_minilm_training_step_matches_hand_count():
    spec = RealTraining.model_validate(
        {"mode": "real", "model": "minilm", "device": "cpu", "data": {"kind": "synthetic"}}
    )
    model = load_model(spec, num_labels=4, pad_token_id=0, seed=0)
    flops = FlopModel.of(model.model, "classification")
    d, ff, layers, r = 384, 1536, 6, 8
    linear = layers * (4 * 2 * d * d + 2 * 2 * d * ff)  # Q, K, V, O and the two FFN matrices
    assert linear == 21_233_664
    lora = layers * 2 * 2 * r * (d + d)  # query and value: A (d -> r) and B (r -> d)
    head = 2 * d * d + 2 * d * 4  # pooler (frozen) + classifier (trained), once per sequence
    assert (flops.linear, flops.lora, flops.head) == (linear, lora, head)
    batch, length = 8, 32
    attention = layers * 4 * length * d
    forward = batch * length * (linear + attention + lora) + batch * head
    step = 2 * forward + batch * length * lora + batch * (2 * d * 4)
    assert flops.forward(batch, length) == forward == 5_551_448_064
    assert flops.train_step(batch, length) == step == 11_140_669_440
    # the 4N rule of device-speeds.md: about 4 x 10.6M non-embedding parameters per position
    assert 0.95 < step / (batch * length) / (4 * 10_616_832) < 1.1
    # a refresh step also back-propagates into the embeddings: the first block's query, key
    # and value input gradients and those of the LoRA A on query and value, plus the norms
    first_input = 3 * 2 * d * d + 2 * 2 * r * d
    assert flops.first_input == first_input == 897_024
    scored = step + batch * length * (first_input + 2 * d)
    assert flops.train_step(batch, length, scores=True) == scored
    assert 0.019 < scored / step - 1 < 0.021  # +2.0 % on a refresh step

    model.configure(freeze_a=True)
    frozen = FlopModel.of(model.model, "classification")
    assert frozen.lora_weight_grad == lora / 2  # B only (r -> d costs the same as d -> r)


def test_llama_training_step_matches_hand_count(tmp_path):
    """A small Llama (grouped-query attention, gated MLP, an LM head at every position) with
    LoRA r = 8 on q/k/v/o, against a hand count; and Fed-FSTQ's extra work."""
    from transformers import LlamaConfig, LlamaForCausalLM

    d, ff, layers, heads, kv, vocab, r = 64, 128, 2, 4, 2, 500, 8
    config = LlamaConfig(
        vocab_size=vocab, hidden_size=d, intermediate_size=ff, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=64,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    spec = RealTraining.model_validate(
        {
            "mode": "real",
            "model": str(tmp_path),
            "task": "causal_lm",
            "data": {"kind": "synthetic"},
            "lora": {"rank": r},
        }
    )
    model = load_model(spec, num_labels=0, pad_token_id=0, seed=0)
    flops = FlopModel.of(model.model, "causal_lm")
    kv_width = d // heads * kv  # 32: k and v project to the grouped heads only
    attention_proj = 2 * d * d + 2 * (2 * d * kv_width) + 2 * d * d  # q, k, v, o
    mlp = 3 * 2 * d * ff  # gate, up, down
    assert flops.linear == layers * (attention_proj + mlp)
    lora = layers * (2 * r * (d + d) * 2 + 2 * r * (d + kv_width) * 2)  # q, o and k, v pairs
    assert flops.lora == lora == flops.lora_weight_grad
    assert flops.head == 2 * d * vocab and flops.head_per_position
    batch, length = 4, 16
    forward = batch * length * (flops.linear + layers * 4 * length * d + lora + 2 * d * vocab)
    assert flops.forward(batch, length) == forward
    plain = 2 * forward + batch * length * lora
    assert flops.train_step(batch, length) == plain
    trainable = sum(p.numel() for p in model.params)
    assert flops.trainable() == trainable
    first_input = 2 * d * d + 2 * (2 * d * kv_width) + 3 * 2 * r * d  # q, k, v and their A
    assert flops.first_input == first_input
    assert flops.train_step(batch, length, scores=True, fisher=True) == (
        plain + batch * length * (first_input + 2 * d) + 3 * trainable
    )
