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

    model.configure(freeze_a=True)
    frozen = FlopModel.of(model.model, "classification")
    assert frozen.lora_weight_grad == lora / 2  # B only (r -> d costs the same as d -> r)
