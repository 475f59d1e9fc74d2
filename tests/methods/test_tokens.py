"""Token policies: top-k per sequence, Algorithm 1's schedule, per-id EMA scores."""

from __future__ import annotations

import pytest
import torch

from simulator.methods.tokens import FisherTokens, RandomTokens, TokenOptions, top_tokens
from simulator.training.local import Batch

SPECIAL = [101, 102, 0]


def _batch() -> Batch:
    ids = torch.tensor([[101, 7, 8, 9, 10, 11, 102, 0], [101, 7, 12, 102, 0, 0, 0, 0]])
    return Batch(ids, (ids != 0).long(), torch.tensor([0, 1]))


def test_top_tokens_keeps_quota_specials_first_never_padding():
    batch = _batch()
    scores = torch.arange(16, dtype=torch.float32).view(2, 8)
    special = torch.tensor(SPECIAL)
    weights = top_tokens(scores, batch.input_ids, batch.attention_mask, special, keep=0.5)
    # row 0: 7 real tokens -> keep 4: [CLS], [SEP] and the two best scores (positions 5, 4)
    assert weights[0].tolist() == [1, 0, 0, 0, 1, 1, 1, 0]
    # row 1: 4 real tokens -> keep 2: the specials
    assert weights[1].tolist() == [1, 0, 0, 1, 0, 0, 0, 0]


def test_schedule_refresh_every_h_steps_and_all_tokens_before_the_first():
    hook = FisherTokens(TokenOptions(keep=0.5, refresh=3)).hook(200, SPECIAL, seed=0)
    batch = _batch()
    wants = [hook.wants_scores(s) for s in range(1, 8)]
    assert wants == [False, False, True, False, False, True, False]
    assert hook.weights(1, batch) is None and hook.weights(2, batch) is None
    assert hook.weights(3, batch) is None  # the refresh step trains on the full loss
    grad_sq = torch.zeros(2, 8)
    grad_sq[0, 1:6] = torch.tensor([5.0, 1.0, 4.0, 2.0, 3.0])
    grad_sq[1, 1:3] = torch.tensor([9.0, 0.5])
    hook.observe(3, batch, torch.zeros(2, 8), grad_sq)
    weights = hook.weights(4, batch)
    # quota 4 of 7: [CLS], [SEP], then id 7 (seen twice: mean (5 + 9) / 2 = 7) and id 9 (4.0)
    assert weights[0].tolist() == [1, 1, 0, 1, 0, 0, 1, 0]
    assert torch.isclose(hook.ema[7], torch.tensor(7.0))  # the EMA starts at its first value


def test_ema_accumulates_over_refreshes_and_unseen_ids_have_no_score():
    hook = FisherTokens(TokenOptions(keep=0.3, refresh=1, rho=0.5)).hook(200, SPECIAL, seed=0)
    batch = _batch()
    grad_sq = torch.ones(2, 8)
    hook.observe(1, batch, torch.zeros(2, 8), grad_sq)
    hook.observe(2, batch, torch.zeros(2, 8), 3 * grad_sq)
    assert torch.isclose(hook.ema[8], torch.tensor(0.5 * 1.0 + 0.5 * 3.0))
    assert torch.isnan(hook.ema[13])  # never seen: no EMA (ranked at unscored_score)


def _refresh_then_mask(hook, refresh_batch: Batch, grad_sq: torch.Tensor, masked: Batch):
    hook.weights(2, refresh_batch)  # refresh = 2: step 2 refreshes, step 3 is masked
    if hook.wants_scores(2):
        hook.observe(2, refresh_batch, torch.zeros_like(grad_sq), grad_sq)
    return hook.weights(3, masked)


def test_a_rare_id_with_large_scores_outranks_a_frequent_id_with_small_ones():
    """Before: the EMA started at 0, so id 7 seen in 3 refreshes at 1.0 (0.271) outranked id 9
    seen once at 2.0 (0.2)."""
    hook = FisherTokens(TokenOptions(keep=0.75, refresh=10, rho=0.9)).hook(200, SPECIAL, seed=0)
    ids = torch.tensor([[101, 7, 9, 102]])
    batch = Batch(ids, torch.ones_like(ids), torch.tensor([0]))
    for step, grad in enumerate((1.0, 1.0, 1.0), start=1):
        hook.observe(
            step, Batch(ids[:, :2], torch.ones(1, 2).long(), None), None, grad * torch.ones(1, 2)
        )
    hook.observe(4, Batch(ids[:, 2:3], torch.ones(1, 1).long(), None), None, 2 * torch.ones(1, 1))
    scores = hook.ema[torch.tensor([7, 9])]
    assert scores[1] > scores[0]
    hook.refreshed = True
    weights = hook.weights(5, batch)  # quota 3 of 4: the specials and id 9, not id 7
    assert weights[0].tolist() == [1, 0, 1, 1]


def test_a_never_scored_id_ranks_at_the_mean_of_the_scored_ones():
    """Before: unseen ids scored +inf, so they came first by construction and, with ties broken
    by position, every policy kept the same (positional) tokens."""
    seen = torch.tensor([[101, 7, 8, 9, 10, 11, 102]])
    refresh = Batch(seen, torch.ones_like(seen), torch.tensor([0]))
    grad_sq = torch.tensor([[0.0, 20.0, 2.0, 1.5, 1.0, 0.5, 0.0]])  # mean 5.0, median 1.5
    masked_ids = torch.tensor([[101, 50, 11, 10, 9, 8, 7, 102]])  # 50: never in a refresh batch
    masked = Batch(masked_ids, torch.ones_like(masked_ids), torch.tensor([0]))
    hook = FisherTokens(TokenOptions(keep=0.5, refresh=2)).hook(200, SPECIAL, seed=3)
    assert hook.unscored_score() == 0.0  # nothing scored yet
    weights = _refresh_then_mask(hook, refresh, grad_sq, masked)
    assert hook.unscored_score() == 5.0
    # quota 4 of 8: the specials, id 7 (20.0) and id 50 (5.0) ahead of id 8 (2.0); under the
    # median (1.5) id 8 would have its place, under +inf id 50 would be first
    assert weights[0].tolist() == [1, 1, 0, 0, 0, 0, 1, 1]


def test_ties_are_broken_at_random_not_by_position():
    """Before: a stable sort kept the first tied positions, i.e. the positional prefix."""
    ids = torch.arange(10, 18)[None, :]
    batch = Batch(ids, torch.ones_like(ids), torch.tensor([0]))
    counts = torch.zeros(8)
    for seed in range(400):
        hook = FisherTokens(TokenOptions(keep=0.5, refresh=2)).hook(200, [], seed=seed)
        counts += _refresh_then_mask(hook, batch, torch.ones(1, 8), batch)[0]
    share = counts / 400
    assert torch.isclose(share.sum(), torch.tensor(4.0))
    assert share.min() > 0.4 and share.max() < 0.6, share  # each position kept half the time


def test_random_policy_is_uniform_over_eligible_tokens_seen_or_not():
    """Before: the random policy gave never-scored ids +inf, so it kept them always."""
    refresh = Batch(torch.tensor([[101, 7, 8, 102]]), torch.ones(1, 4).long(), None)
    ids = torch.tensor([[101, 7, 8, 50, 51, 52, 53, 102]])  # 50-53 never in a refresh batch
    targets = torch.tensor([[0, 1, 1, 1, 1, 1, 1, 0]])
    masked = Batch(ids, torch.ones_like(ids), None, targets)
    counts = torch.zeros(8)
    for seed in range(400):
        hook = RandomTokens(TokenOptions(keep=0.5, refresh=2)).hook(200, SPECIAL, seed=seed)
        counts += _refresh_then_mask(hook, refresh, torch.zeros(1, 4), masked)[0]
    share = counts / 400
    assert share[0] == 0 and share[7] == 0  # not targets: never kept
    assert torch.isclose(share[1:7].sum(), torch.tensor(3.0))  # ⌈0.5 · 6⌉ targets per step
    assert share[1:7].min() > 0.4 and share[1:7].max() < 0.6, share


def test_mask_diagnostics_against_a_hand_count():
    from simulator.methods.tokens import MaskDiagnostics

    eligible = torch.tensor([[0, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0]]).bool()
    weights = torch.tensor([[0, 1, 0, 1, 0, 0], [1, 1, 0, 0, 0, 0]]).float()
    unscored = torch.tensor([[0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0]]).bool()
    diagnostics = MaskDiagnostics()
    diagnostics.add(weights, eligible, unscored)
    # row 0 keeps positions {1, 3}; its prefix of 2 targets is {1, 2}: Jaccard 1/3
    # row 1 keeps {0, 1}, its prefix: Jaccard 1
    assert diagnostics.summary() == pytest.approx(
        {
            "kept_share": 4 / 8,
            "unscored_share": 1 / 4,
            "prefix_jaccard": (1 / 3 + 1) / 2,
            "prefix_rows": 1 / 2,
        }
    )
    assert MaskDiagnostics().summary() is None  # no masked step


def test_random_policy_needs_no_scores_and_is_seeded():
    batch = _batch()
    masks = []
    for _ in range(2):
        hook = RandomTokens(TokenOptions(keep=0.5, refresh=2)).hook(200, SPECIAL, seed=4)
        assert not hook.wants_scores(2)
        hook.weights(2, batch)
        masks.append(hook.weights(3, batch))
    assert torch.equal(masks[0], masks[1])
    assert masks[0].sum(dim=1).tolist() == [4.0, 2.0]


def test_token_recall_counts_informative_targets_the_masks_keep():
    from simulator.methods.tokens import TokenRecall

    ids = torch.tensor([[101, 7, 8, 9, 10, 11, 12, 102]])
    batch = Batch(ids, torch.ones_like(ids), None, torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1]]))
    informative = torch.zeros(200, dtype=torch.bool)
    informative[[8, 9]] = True  # 8 is in the prompt: never a target, never counted
    hook = FisherTokens(TokenOptions(keep=0.4, refresh=2)).hook(200, SPECIAL, seed=0)
    meter = TokenRecall(hook, informative)
    assert meter.weights(1, batch) is None  # before the first refresh: nothing masked, not counted
    meter.weights(2, batch)
    grad_sq = torch.tensor([[0.0, 0, 0, 1.0, 5.0, 4.0, 0.5, 0]])
    meter.observe(2, batch, torch.zeros(1, 8), grad_sq)
    weights = meter.weights(3, batch)  # quota ceil(0.4 * 5) = 2 of 5 targets: [SEP] and id 10
    assert weights[0].tolist() == [0, 0, 0, 0, 1, 0, 0, 1]
    assert (meter.kept, meter.total, meter.kept_all, meter.total_all) == (0, 1, 2, 5)
    assert meter.recall == 0.0 and meter.keep_share == 0.4


def test_aligned_fisher_scores_each_target_by_the_input_that_predicts_it():
    ids = torch.tensor([[5, 6, 7, 8]])
    batch = Batch(ids, torch.ones_like(ids), None)
    grad_sq = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    own = FisherTokens(TokenOptions(refresh=1)).hook(20, [], seed=0)
    aligned = FisherTokens(TokenOptions(refresh=1, align=True)).hook(20, [], seed=0)
    own.observe(0, batch, None, grad_sq)
    aligned.observe(0, batch, None, grad_sq)
    assert own.ema[ids[0]].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert aligned.ema[ids[0]].tolist() == [0.0, 1.0, 2.0, 3.0]  # token 8 by input 7's gradient
