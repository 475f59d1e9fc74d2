"""Local training: seeded and repeatable, token hooks see true embedding gradients, masks bite."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from simulator.scenario import LocalTraining, RealTraining
from simulator.training.data import load_data, tokenize
from simulator.training.flops import FlopModel
from simulator.training.local import train_local
from simulator.training.models import load_model, load_tokenizer

SETTINGS = LocalTraining(steps=3, batch_size=4, seq_len=32, lr=1e-2)


class Recorder:
    """A hook that scores every step, optionally masking every other token after [CLS]."""

    def __init__(self, mask: bool = False) -> None:
        self.mask = mask
        self.seen: list[tuple] = []

    def wants_scores(self, step: int) -> bool:
        return True

    def weights(self, step, batch):
        if not self.mask:
            return None
        w = torch.ones_like(batch.input_ids, dtype=torch.float32)
        w[:, 1::2] = 0.0
        return w

    def observe(self, step, batch, token_loss, token_grad_sq):
        self.seen.append((step, batch, token_loss.clone(), token_grad_sq.clone()))


def _setup(tiny_models, task: str = "classification", tmp_path=None):
    if task == "classification":
        raw = {"mode": "real", "model": str(tiny_models["bert"]), "device": "cpu"}
        spec = RealTraining.model_validate({**raw, "data": {"kind": "synthetic", "samples": 60}})
    else:
        path = tmp_path / "text.jsonl"
        lines = [f'{{"text": "the {w} sat on the mat and the {w} ran"}}' for w in ("cat", "dog")]
        path.write_text("\n".join(lines * 10) + "\n")
        spec = RealTraining.model_validate(
            {
                "mode": "real",
                "model": str(tiny_models["gpt2"]),
                "task": "causal_lm",
                "device": "cpu",
                "data": {"kind": "jsonl", "path": str(path)},
                "partition": {"kind": "iid"},
            }
        )
    data = load_data(spec.data, spec.task, seed=0)
    tokenizer = load_tokenizer(spec)
    tokens = tokenize(data, tokenizer, SETTINGS.seq_len)
    model = load_model(spec, len(data.label_names), tokenizer.pad_token_id, seed=0)
    return model, tokens, data.train[:12], FlopModel.of(model.model, spec.task)


def test_same_seed_same_delta_other_seed_differs(tiny_models):
    model, tokens, rows, flops = _setup(tiny_models)
    start = model.get_flat()
    runs = []
    for entropy in (1, 1, 2):
        model.set_flat(start)
        delta, stats = train_local(
            model, tokens, rows, SETTINGS, flops, np.random.SeedSequence(entropy)
        )
        runs.append(delta)
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])
    assert np.abs(runs[0]).max() > 0
    assert stats.steps == 3 and stats.tokens <= stats.positions


def test_hook_sees_the_embedding_gradient_of_the_step(tiny_models):
    model, tokens, rows, flops = _setup(tiny_models)
    start = model.get_flat()
    hook = Recorder()
    _, stats = train_local(model, tokens, rows, SETTINGS, flops, np.random.SeedSequence(3), hook)
    assert [s[0] for s in hook.seen] == [1, 2, 3]
    shapes = [tuple(b.input_ids.shape) for _, b, _, _ in hook.seen]
    assert stats.work_flop == sum(flops.train_step(*shape, scores=True) for shape in shapes)
    assert stats.positions == sum(b * t for b, t in shapes)
    _, batch, token_loss, grad_sq = hook.seen[0]
    model.set_flat(start)  # the state the first step started from
    embeds = model.model.get_input_embeddings()(batch.input_ids).detach().requires_grad_()
    logits = model.model(inputs_embeds=embeds, attention_mask=batch.attention_mask).logits
    per_seq = F.cross_entropy(logits, batch.labels, reduction="none")
    (grad,) = torch.autograd.grad(per_seq.mean(), embeds)
    torch.testing.assert_close(grad_sq, grad.pow(2).sum(-1))
    assert (grad_sq[batch.attention_mask == 0] == 0).all()
    torch.testing.assert_close(token_loss[:, 0], per_seq.detach())


def test_zero_weight_tokens_contribute_no_gradient_classification(tiny_models):
    model, tokens, rows, flops = _setup(tiny_models)
    hook = Recorder(mask=True)
    train_local(model, tokens, rows, SETTINGS, flops, np.random.SeedSequence(4), hook)
    for _, batch, _, grad_sq in hook.seen:
        masked = torch.zeros_like(grad_sq, dtype=torch.bool)
        masked[:, 1::2] = True
        assert (grad_sq[masked] == 0).all()
        kept = ~masked & (batch.attention_mask == 1)
        assert (grad_sq[kept] > 0).all()


def test_causal_lm_weights_select_loss_terms(tiny_models, tmp_path):
    model, tokens, rows, flops = _setup(tiny_models, "causal_lm", tmp_path)
    start = model.get_flat()
    hook = Recorder(mask=True)
    _, stats = train_local(model, tokens, rows, SETTINGS, flops, np.random.SeedSequence(5), hook)
    _, batch, token_loss, _ = hook.seen[0]
    assert (token_loss[:, 0] == 0).all()  # nothing predicts the first token
    kept = batch.attention_mask[:, 1:].float() * hook.weights(1, batch)[:, 1:]
    trained_on = float((token_loss[:, 1:] * kept).sum() / kept.sum())
    assert stats.loss_first == pytest.approx(trained_on, rel=1e-5)
    assert trained_on != pytest.approx(float(token_loss[:, 1:].sum() / (token_loss > 0).sum()))
    model.set_flat(start)
    logits = model.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    manual = F.cross_entropy(logits[0, :-1], batch.input_ids[0, 1:], reduction="none")
    width = int(batch.attention_mask[0].sum())
    torch.testing.assert_close(token_loss[0, 1:width], manual[: width - 1].detach())


def test_fisher_policy_refreshes_every_h_steps_in_training(tiny_models):
    from simulator.methods.tokens import FisherTokens, TokenOptions

    model, tokens, rows, flops = _setup(tiny_models)
    hook = FisherTokens(TokenOptions(keep=0.5, refresh=3)).hook(
        model.model.config.vocab_size, [101, 102], 0
    )
    observed, masks = [], []
    observe, weights = hook.observe, hook.weights
    hook.observe = lambda step, *a: (observed.append(step), observe(step, *a))
    hook.weights = lambda step, batch: masks.append((step, weights(step, batch))) or masks[-1][1]
    settings = LocalTraining(steps=7, batch_size=4, seq_len=32, lr=1e-2)
    train_local(model, tokens, rows, settings, flops, np.random.SeedSequence(6), hook)
    assert observed == [3, 6]
    masked = [step for step, w in masks if w is not None]
    assert masked == [4, 5, 7]  # all tokens before the first refresh and at refreshes
    for _, w in masks:
        if w is not None:
            assert 0 < float(w.mean()) < 1


def _instruction_setup(folder, **training):
    """A model and the synthetic instruction task (response-only targets) on it."""
    spec = RealTraining.model_validate(
        {
            "mode": "real",
            "model": str(folder),
            "task": "causal_lm",
            "device": "cpu",
            "data": {"kind": "synthetic", "samples": 40},
            # the synthetic instructions are never cut: up to ~80 tokens with these tokenizers
            "local": {"seq_len": 96},
            **training,
        }
    )
    data = load_data(spec.data, spec.task, seed=0)
    tokenizer = load_tokenizer(spec)
    tokens = tokenize(data, tokenizer, spec.local.seq_len)
    model = load_model(spec, 0, tokenizer.pad_token_id, seed=0)
    return model, tokens, data


def _full_logit_losses(model, batch, weights):
    """The loss as computed before: logits at every position, then masked."""
    logits = model.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    target = batch.targets[:, 1:].float()
    losses = F.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]),
        batch.input_ids[:, 1:].reshape(-1),
        reduction="none",
    ).view_as(target)
    weight = target if weights is None else target * weights[:, 1:]
    return (losses * weight).sum() / weight.sum(), F.pad(losses * target, (1, 0))


@pytest.mark.parametrize("name", ["llama", "gpt2", "bert"])
def test_target_only_logits_give_the_full_logits_loss(tiny_models, name):
    """Llama and GPT-2 run the LM head only at target positions (BERT as a decoder has a head
    transform, so it keeps full logits); the loss is the same to 1e-5, with and without a
    token mask, and per-token losses are exact at every target when the step scores tokens."""
    from simulator.training.local import Batch, _token_losses

    model, tokens, _ = _instruction_setup(tiny_models[name])
    assert (model._split is None) == (name == "bert")
    with torch.no_grad():  # a trained adapter, so LoRA is not a no-op
        for param in model.params:
            param.normal_(0, 0.05)
    rows = torch.arange(6)
    width = int(tokens.attention_mask[rows].sum(1).max())
    batch = Batch(
        tokens.input_ids[rows, :width],
        tokens.attention_mask[rows, :width],
        None,
        tokens.targets[rows, :width],
    )
    model.model.eval()
    embeds = model.model.get_input_embeddings()(batch.input_ids)
    weights = torch.rand(batch.input_ids.shape, generator=torch.Generator().manual_seed(0)) > 0.5
    for mask, scores in ((None, False), (weights.float(), False), (weights.float(), True)):
        with torch.no_grad():
            loss, per_token = _token_losses(model, batch, embeds, mask, scores)
            want, want_tokens = _full_logit_losses(model, batch, mask)
        torch.testing.assert_close(loss, want, rtol=1e-5, atol=1e-6)
        if scores or mask is None:
            torch.testing.assert_close(per_token, want_tokens, rtol=1e-5, atol=1e-6)
        else:  # only the kept targets were computed
            kept = F.pad(batch.targets[:, 1:] * weights[:, 1:], (1, 0)).bool()
            torch.testing.assert_close(per_token[kept], want_tokens[kept], rtol=1e-5, atol=1e-6)
            assert (per_token[~kept] == 0).all() and (want_tokens[~kept] > 0).any()


@pytest.mark.slow
def test_smollm2_target_only_step_matches_full_logits():
    """SmolLM2-135M at one step of 4 x 128 synthetic instructions: the target-only loss
    and its adapter gradient equal the full-logits ones to 1e-5."""
    from simulator.training.local import Batch, _token_losses

    model, tokens, _ = _instruction_setup("smollm2-135m", local={"seq_len": 128})
    assert model._split is not None
    rows = torch.arange(4)
    width = int(tokens.attention_mask[rows].sum(1).max())
    batch = Batch(*(t[rows, :width] for t in (tokens.input_ids, tokens.attention_mask)), None,
                  tokens.targets[rows, :width])  # fmt: skip
    embeds = model.model.get_input_embeddings()(batch.input_ids).detach()
    loss, _ = _token_losses(model, batch, embeds, None, False)
    grad = torch.autograd.grad(loss, model.params[1])[0]  # a B matrix (A's gradient is 0 at B=0)
    want, _ = _full_logit_losses(model, batch, None)
    want_grad = torch.autograd.grad(want, model.params[1])[0]
    torch.testing.assert_close(loss, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, want_grad, rtol=1e-4, atol=1e-7)
