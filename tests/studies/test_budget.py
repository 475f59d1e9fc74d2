"""studies/budget.py: what each arm of the budget-matched study tests, and its section of
docs/RESULTS.md rendered from its JSON."""

from __future__ import annotations

import pytest

from studies import budget, headline
from studies.results_doc import budget_matrix_rows, budget_ranking, render


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        (
            {"codec": "fstq", "codec_options": {"budget": "bits", "bits_per_param": 2.0}},
            ("fisher", 2.0),
        ),
        (
            {
                "codec": "fstq",
                "codec_options": {"budget": "bits", "bits_per_param": 1, "importance": "random"},
            },
            ("random", 1.0),
        ),
        ({"codec": "fstq", "codec_options": {"fractions": [0.1, 0.4, 0.5]}}, ("fractions", None)),
        ({"codec": "qsgd", "codec_options": {"bits": 3}}, ("qsgd", 3.0)),
        ({"codec": "signsgd", "codec_options": {}}, ("ef-signsgd", 1.0)),
        ({"codec": "fp16", "codec_options": {}}, ("baseline", None)),
    ],
)
def test_allocation_of_each_arm(method, expected):
    assert budget.allocation(method) == expected


def _arm(name: str, allocation: str, bits: float | None, final: float) -> dict:
    return {
        "arm": name,
        "allocation": allocation,
        "nominal_bits": bits,
        "bits_per_param": bits,
        "final": [final, 0.01],
        "final_vs_baseline": [final - 0.5, 0.01],
        "rouge_l": [0.4, 0.02],
        "uplink_total_mb": 10.0 if bits is None else bits,
        "pareto": bits == 1.0,
    }


def test_budget_section_is_rendered_from_its_json():
    arms = [_arm("fedavg-fp16", "baseline", None, 0.5)]
    arms += [
        _arm(f"{kind}-{bits}bit", kind, float(bits), 0.6 + 0.01 * i - 0.05 * bits)
        for bits in (1, 2, 3)
        for i, kind in enumerate(("fisher", "magnitude", "random"))
    ]
    study = {
        "key": budget.KEY,
        "title": budget.TITLE,
        "scenario": budget.SCENARIO,
        "seeds": [0, 1, 2],
        "metric": "nll",
        "baseline": "fedavg-fp16",
        "arms": arms,
        "figures": ["llm-budget-pareto.png"],
        "host_minutes": 1.0,
        "cache_looked": 0,
        "cache_hits": 0,
        "cache_saved_minutes": 0.0,
    }
    head, rows = budget_matrix_rows(study)
    assert [r[0] for r in rows] == ["1", "2", "3"]
    assert rows[0][head.index("fisher")] == "0.550 ± 0.010 (1.00 b)"
    ranking = budget_ranking(study)
    assert ranking[0] == (
        "- 1 bit(s) per parameter, final nll: fisher 0.550 < magnitude 0.560 < random 0.570."
    )
    results = {"command": "make results", "paper": headline.PAPER, "studies": [], "pending": []}
    text = render({**results, "token_recall": None, "budget": study})
    assert f"## {budget.TITLE} (`llm-budget`)" in text and "llm-budget-pareto.png" in text
