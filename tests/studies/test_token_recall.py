"""studies/token_recall.py on a tiny random Llama: counts are real and the keep share is r_tok."""

from __future__ import annotations

import pytest
from conftest import real_scenario_dict

from simulator.scenario import load_scenario
from simulator.training.task import RealTask
from studies import token_recall

pytestmark = pytest.mark.slow


def test_every_policy_is_measured_on_the_same_informative_targets(write_scenario, tiny_models):
    raw = real_scenario_dict(tiny_models["llama"], methods=[{"name": "fp16"}])
    raw["training"] |= {"task": "causal_lm", "threads": 1}
    raw["evaluation"] = {"targets": [10.0]}  # a perplexity
    raw["training"]["data"] = {"kind": "synthetic", "samples": 120, "eval_samples": 20}
    raw["training"]["local"] = {"steps": 6, "batch_size": 4, "seq_len": 96, "lr": 1e-3}
    raw["evaluation"] = {}
    task = RealTask(load_scenario(write_scenario(raw)))
    results = token_recall.measure(task, [0, 1], keep=0.5, refresh=2)
    assert set(results) == set(token_recall.POLICIES)
    informative = {row["informative_tokens"] for row in results.values()}
    assert len(informative) == 1 and informative.pop() > 0  # the same targets for each
    for row in results.values():
        assert 0.0 <= row["recall"] <= 1.0
        assert 0.5 <= row["keep_share"] < 0.8  # ⌈r_tok·T⌉ of T targets, specials kept
