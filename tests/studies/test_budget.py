"""studies/budget.py: what each arm of the budget-matched study tests, and its section of
docs/RESULTS.md rendered from the committed JSON."""

from __future__ import annotations

import pytest
from conftest import PROJECT_ROOT

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


def test_budget_section_is_rendered_from_the_committed_json():
    results = headline.load(PROJECT_ROOT / "docs")
    study = results["budget"]
    head, rows = budget_matrix_rows(study)
    assert [r[0] for r in rows] == ["1", "2", "3"]
    fisher_1 = next(a for a in study["arms"] if a["arm"] == "fisher-1bit")
    assert rows[0][head.index("fisher")].startswith(f"{fisher_1['final'][0]:.3f}")
    ranking = budget_ranking(study)
    assert len(ranking) == 3 and ranking[0].startswith("- 1 bit(s) per parameter, final nll: ")
    text = render(results)
    assert f"## {budget.TITLE} (`llm-budget`)" in text and "llm-budget-pareto.png" in text
