"""The FLOP model: counted work of the training steps a client actually ran.

A client's simulated compute time is this work divided by its device's sustained training
FLOP/s (devices.py), the usual rule for LoRA fine-tuning (≈ 4N FLOPs per token for N frozen
parameters: forward 2N, activation gradients 2N), made exact for the model at hand. Counted
per step, over the padded batch the step really processed (B sequences × T positions,
T = the batch's longest sequence):

    forward, per position     F_lin  = Σ 2·in·out over the frozen linear layers of the blocks
                              F_att  = layers · 4·T·d      (QKᵀ and AV, full T×T attention)
                              F_lora = Σ 2·r·(in + out)    over the LoRA pairs
    head                      F_head = Σ 2·in·out of the head (pooler/classifier: once per
                                       sequence; a causal LM head: every position)
    backward                  activation gradients ≈ the forward again (F_lin + F_att + F_lora
                              + F_head), plus weight gradients of what trains only: 2·r·in per
                              trainable A, 2·r·out per trainable B, 2·in·out per trained
                              head layer (the classifier; a frozen pooler has none).

    Fed-FSTQ's extra work, counted so time to target does not favour it:
    token scores (a refresh step of a scored token policy): the input embeddings then need a
                              gradient, which no other step computes (nothing below the first
                              block trains, so autograd stops there): per position, the input
                              gradients of the first block's projections that read its input
                              (F_in = Σ 2·in·out over its query/key/value, fused or not, and
                              the LoRA A matrices on them), plus 2·d for the squared norm of
                              each embedding's gradient;
    Fisher estimate (codecs that need it): 3 per trainable coordinate per step (square,
                              scale, add of the EMA F̂ ← ρF̂ + (1−ρ)g⊙g).

So a LoRA training position costs ≈ 2·F_lin = 4N, as the rule says. Not counted (each well under
1%): layer norms, softmax, GELU, biases, embedding lookups and the optimizer update. Evaluation
runs on the server and costs the clients nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

_HEAD_NAMES = ("classifier", "pooler", "score", "lm_head")
# The projections that read a block's input (BERT, Llama/Mistral, GPT-2's fused c_attn).
_INPUT_PROJECTIONS = ("query", "key", "value", "q_proj", "k_proj", "v_proj", "c_attn")
_FIRST_BLOCK = re.compile(r"\.(?:layer|layers|h)\.0\.")


def _linear_shape(module: torch.nn.Module) -> tuple[int, int] | None:
    """(in, out) of a Linear or a GPT-2 style Conv1D, else None."""
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        return None
    kind = type(module).__name__
    if kind == "Linear" or isinstance(module, torch.nn.Linear):
        return weight.shape[1], weight.shape[0]
    if kind == "Conv1D":
        return weight.shape[0], weight.shape[1]
    return None


@dataclass(frozen=True)
class FlopModel:
    """Per-position and per-sequence costs of one model + adapter configuration."""

    linear: float  # F_lin
    lora: float  # F_lora
    lora_weight_grad: float  # weight gradients of the trainable LoRA matrices, per position
    head: float  # F_head
    head_weight_grad: float  # weight gradients of the trainable head layers (the classifier)
    head_per_position: bool  # causal LM head (every position) vs classifier (once per sequence)
    layers: int
    width: int
    first_input: float = 0.0  # F_in: input gradients of the first block's input projections

    @classmethod
    def of(cls, model: torch.nn.Module, task: str) -> FlopModel:
        """Count the model's linear layers, LoRA pairs and head."""
        linear = lora = lora_grad = head = head_grad = first_input = 0.0
        for name, module in model.named_modules():
            if "original_module" in name or hasattr(module, "base_layer"):
                continue  # PEFT's frozen copy of a trained head; a LoRA wrapper (its parts count)
            shape = _linear_shape(module)
            if shape is None:
                continue
            cost = 2.0 * shape[0] * shape[1]
            parts = name.split(".")
            if (
                _FIRST_BLOCK.search(name)
                and any(part in _INPUT_PROJECTIONS for part in parts)
                and "lora_B" not in parts
            ):
                first_input += cost
            if ".lora_A." in name or ".lora_B." in name:
                lora += cost
                if module.weight.requires_grad:
                    lora_grad += cost
            elif any(part in _HEAD_NAMES for part in name.split(".")):
                head += cost
                if module.weight.requires_grad:
                    head_grad += cost
            else:
                linear += cost
        config = model.config
        return cls(
            linear,
            lora,
            lora_grad,
            head,
            head_grad,
            task == "causal_lm",
            int(config.num_hidden_layers),
            int(config.hidden_size),
            first_input,
        )

    def attention(self, positions: int) -> float:
        """F_att at sequence length T."""
        return self.layers * 4.0 * positions * self.width

    def forward(self, batch: int, positions: int) -> float:
        """FLOPs of one forward pass over a padded batch."""
        per_position = self.linear + self.attention(positions) + self.lora
        heads = batch * positions if self.head_per_position else batch
        return batch * positions * per_position + heads * self.head

    def train_step(
        self, batch: int, positions: int, scores: bool = False, fisher: bool = False
    ) -> float:
        """FLOPs of one training step: forward, activation gradients, trainable weight grads,
        and the token scores and Fisher estimate when the step makes them."""
        heads = batch * positions if self.head_per_position else batch
        weight_grads = batch * positions * self.lora_weight_grad + heads * self.head_weight_grad
        extra = batch * positions * (self.first_input + 2.0 * self.width) if scores else 0.0
        if fisher:
            extra += 3.0 * self.trainable()
        return 2.0 * self.forward(batch, positions) + weight_grads + extra

    def trainable(self) -> float:
        """Trainable coordinates (each weight gradient above costs 2 per coordinate)."""
        return (self.lora_weight_grad + self.head_weight_grad) / 2.0
