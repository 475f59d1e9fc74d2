"""Codec options are checked when the scenario loads, as strictly as its own sections: a value
that validate let through used to crash the first round or run silently wrong."""

from __future__ import annotations

import pytest
from conftest import real_scenario_dict

from simulator.errors import ScenarioError
from simulator.methods.fstq import FSTQOptions
from simulator.scenario import load_scenario


@pytest.mark.parametrize(
    ("codec", "options", "problem"),
    [
        # crashed the first round: ValueError, cannot convert float NaN to integer
        (
            "fstq",
            {"budget": "link", "upload_s": float("inf")},
            "upload_s: Input should be a finite",
        ),
        ("fstq", {"budget": "link", "upload_s": 1e300}, "upload_s: Input should be less than or"),
        # a NaN share passed every sum check
        ("fstq", {"fractions": [float("nan"), 0.0, 0.0]}, "fractions.0: Input should be a finite"),
        # `true` was read as 1: one coordinate per bucket, or one coordinate kept
        ("qsgd", {"bucket": True}, "bucket: Input should be a valid integer"),
        ("topk", {"k": True}, "k: Input should be a valid integer"),
        ("topk", {"ef": 1}, "ef: Input should be a valid boolean"),
        ("signsgd", {"ef": "no"}, "ef: Input should be a valid boolean"),
    ],
)
def test_absurd_codec_options_are_errors_at_load(
    write_scenario, minilm_path, codec, options, problem
):
    raw = real_scenario_dict(minilm_path)
    raw["methods"][0].update(codec=codec, codec_options=options)
    with pytest.raises(ScenarioError, match=f"codec_options for '{codec}': {problem}"):
        load_scenario(write_scenario(raw))


def test_fstq_fractions_still_load_from_a_list():
    """TOML and a run's scenario.json give the fractions as a list."""
    options = FSTQOptions.model_validate(
        {"fractions": [0.1, 0.4, 0.5], "budget": "link", "upload_s": 86400}
    )
    assert options.fractions == (0.1, 0.4, 0.5) and options.upload_s == 86400.0


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"refresh": True}, "refresh: Input should be a valid integer"),  # was every step (H = 1)
        ({"keep": 1e308}, "keep: Input should be less than or equal to 1"),
        ({"align": 1}, "align: Input should be a valid boolean"),
    ],
)
def test_absurd_token_options_are_errors_at_load(write_scenario, minilm_path, options, problem):
    raw = real_scenario_dict(minilm_path)
    raw["methods"][0].update(token_policy="fisher", token_options=options)
    with pytest.raises(ScenarioError, match=problem):
        load_scenario(write_scenario(raw))
