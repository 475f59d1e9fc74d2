"""Inference token reduction: top tokens kept in order, batch compacted, specials kept."""

from __future__ import annotations

import torch

from simulator.training.inference import reduce_tokens


def test_reduce_keeps_top_tokens_in_order_and_compacts():
    ids = torch.tensor([[101, 5, 6, 7, 8, 102, 0, 0], [101, 9, 5, 102, 0, 0, 0, 0]])
    mask = (ids != 0).long()
    scores = torch.zeros(200)
    scores[5], scores[6], scores[7], scores[8], scores[9] = 0.9, 0.1, 0.8, 0.2, 0.05
    out_ids, out_mask = reduce_tokens(ids, mask, scores, [101, 102, 0], keep=0.5)
    # row 0: 6 real tokens -> 3 kept: [CLS], [SEP] and id 5; row 1: 4 -> 2: the specials
    assert out_ids.tolist() == [[101, 5, 102], [101, 102, 0]]
    assert out_mask.tolist() == [[1, 1, 1], [1, 1, 0]]


def test_keep_all_is_identity_up_to_padding():
    ids = torch.tensor([[101, 5, 6, 102]])
    out_ids, out_mask = reduce_tokens(ids, torch.ones_like(ids), torch.rand(200), [101, 102], 1.0)
    assert torch.equal(out_ids, ids) and out_mask.all()
