"""On real PubMedQA batches (SmolLM2's tokenizer, the LLM study's schedule), the token policies'
masks differ from one another and from the positional prefix."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import PROJECT_ROOT

from simulator.methods.registry import policy
from simulator.methods.tokens import MaskDiagnostics, ScheduledHook
from simulator.scenario import load_scenario
from simulator.training.data import load_data, tokenize
from simulator.training.flops import FlopModel
from simulator.training.local import Batch, train_local
from simulator.training.models import load_model, load_tokenizer, resolve_model

STUDY = PROJECT_ROOT / "scenarios" / "llm-pubmedqa.toml"


class Capture:
    """A hook that keeps the masks of the hook it wraps, by step."""

    def __init__(self, hook: ScheduledHook) -> None:
        self.hook = hook
        self.masks: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def wants_scores(self, step: int) -> bool:
        return self.hook.wants_scores(step)

    def observe(self, step: int, batch: Batch, *scores: torch.Tensor) -> None:
        self.hook.observe(step, batch, *scores)

    def weights(self, step: int, batch: Batch) -> torch.Tensor | None:
        weights = self.hook.weights(step, batch)
        if weights is not None:
            self.masks[step] = (weights.bool() & batch.targets.bool(), batch.targets.bool())
        return weights


@pytest.fixture(scope="module")
def study(shared_datasets: Path, tmp_path_factory):
    """A tiny random Llama with SmolLM2's tokenizer on PubMedQA at the study's settings."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    path = shared_datasets / "pubmedqa" / "ori_pqal.json"
    scenario = load_scenario(STUDY, [f"training.data.path={path}"])
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m"))
    folder = tmp_path_factory.mktemp("tiny-smollm2")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    spec = scenario.training.model_copy(update={"model": str(folder), "device": "cpu"})
    data = load_data(spec.data, spec.task, seed=0)
    tok = load_tokenizer(spec)
    tokens = tokenize(data, tok, spec.local.seq_len)
    model = load_model(spec, len(data.label_names), tok.pad_token_id, seed=0)
    fed = next(m for m in scenario.methods if m.token_policy == "fisher")
    return model, tokens, data, spec, fed.token_options, tok.all_special_ids


@pytest.mark.slow
def test_policies_select_different_tokens_not_the_prefix(study):
    """Before: never-scored ids scored +inf and ties went by position, so 90-99 % of rows kept
    the positional prefix under every policy."""
    model, tokens, data, spec, options, specials = study
    flops = FlopModel.of(model.model, spec.task)
    start = model.get_flat()
    masks: dict[str, dict] = {}
    diagnostics: dict[str, MaskDiagnostics] = {}
    for name in ("fisher", "loss", "random"):
        diagnostics[name] = MaskDiagnostics()
        for client in range(3):
            model.set_flat(start)
            hook = policy(name, options).hook(model.model.config.vocab_size, specials, client)
            capture = Capture(hook)
            rows = data.train[client * 16 : (client + 1) * 16]
            seed = np.random.SeedSequence(client)
            train_local(model, tokens, rows, spec.local, flops, seed, capture)
            for step, (kept, eligible) in capture.masks.items():
                masks.setdefault(name, {})[client, step] = kept
                diagnostics[name].add(kept.float(), eligible, torch.zeros_like(kept))
    for name, counts in diagnostics.items():
        summary = counts.summary()
        assert summary["prefix_rows"] < 0.1, (name, summary)
        assert summary["prefix_jaccard"] < 0.75, (name, summary)
    for a, b in itertools.combinations(masks, 2):
        overlaps = []
        for key, kept in masks[a].items():
            other = masks[b][key]
            inter = (kept & other).sum(dim=1).float()
            union = (kept | other).sum(dim=1).float().clamp_min(1)
            overlaps.append(inter / union)
        overlap = float(torch.cat(overlaps).mean())
        assert overlap < 0.75, (a, b, overlap)
