"""studies/headline.py and results_doc.py: docs/RESULTS.md is what the committed JSON renders
to, verdicts against the paper, and a tiny real-training study end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, real_scenario_dict

from studies import headline
from studies.results_doc import HEADLINE_ARMS, render, verdict

DOCS = PROJECT_ROOT / "docs"


def test_results_document_matches_the_committed_json():
    results = headline.load(DOCS)
    assert (DOCS / "RESULTS.md").read_text(encoding="utf-8") == render(results), (
        "docs/RESULTS.md is stale: run .venv/bin/python -m studies.headline --render-only"
    )
    for study in results["studies"]:
        for name in study["figures"]:
            assert (DOCS / "results" / name).is_file()


def test_committed_results_cover_the_issue():
    """Every study is either in the document, complete with every arm the issue names over at
    least three seeds, or listed as not yet run; retired studies are neither."""
    results = headline.load(DOCS)
    shown = [s["key"] for s in results["studies"]]
    if results["budget"]:
        shown.append(results["budget"]["key"])
    pending = [p["key"] for p in results["pending"]]
    assert sorted(shown + pending) == sorted(s.key for s in (*headline.STUDIES, headline.BUDGET))
    matched = {"fedavg-fp16", "qsgd-4bit", "topk-ef", "fed-fstq", "fed-fstq-no-tokens"}
    for study in results["studies"]:
        assert len(study["seeds"]) >= 3
        assert {a["arm"] for a in study["arms"]} >= matched | set(headline.CONTROLS)


def test_the_studies_are_the_minilm_networks_and_the_llm_headline():
    """The PubMedQA studies are retired (MiniLM learnt only the label prior, the LLM's NLL target
    was crossed at round 2); the LLM headline and its 20 Mbps twin share one training."""
    keys = [s.key for s in headline.STUDIES]
    assert keys == ["controlled-20mbps", "hetero-lte", "mahimahi", "llm-lte", "llm-20mbps"]
    llm = {s.key: s for s in headline.STUDIES if s.scenario == headline.LLM}
    assert llm["llm-lte"].training == llm["llm-20mbps"].training
    assert all(s.metric == "answer_accuracy" and len(range(s.seeds)) >= 3 for s in llm.values())
    minilm = [s.training for s in headline.STUDIES if s.scenario == headline.HEADLINE]
    assert len(set(minilm)) == 1 and minilm[0] != llm["llm-lte"].training


def test_task_order_puts_a_scenarios_twins_after_its_first_study():
    """The committed studies' order: per seed, the first study of each scenario file, then
    the network studies that replay its training, so the first two jobs train different ones."""
    tasks = headline.task_order([t for s in headline.STUDIES for t in s.tasks(Path("r"))])
    seed_zero = [Path(t.out).name for t in tasks if t.seed == 0]
    assert [t.seed for t in tasks] == sorted(t.seed for t in tasks)
    assert seed_zero == ["controlled-20mbps", "llm-lte", "hetero-lte", "llm-20mbps", "mahimahi"]


@pytest.mark.parametrize(
    ("pair", "expected"),
    [
        ([40.0, 10.0], "matches"),
        ([30.0, 10.0], "falls short"),
        ([60.0, 10.0], "exceeds"),
        ([46.0, None], "matches"),
        ([3.5, None], "falls short"),
        ([None, None], "not reached"),
        ([21.9, 51.9], "inconclusive"),  # before: "matches", though 0 is inside too
        ([-16.7, 118.0], "inconclusive"),
        ([0.0, 0.0], "falls short"),
    ],
)
def test_verdict_against_the_paper(pair, expected):
    assert verdict(pair, 46.0) == expected


@pytest.mark.parametrize(
    ("pair", "expected"),
    [([3.7, 1.0], "lower"), ([30.0, 5.0], "higher"), ([15.0, 5.0], "matches")],
)
def test_an_overhead_below_the_papers_is_lower_not_falling_short(pair, expected):
    assert verdict(pair, 17.0, cost=True) == expected


ALL_ARMS = ("fedavg-fp16", *headline.CONTROLS, "fed-fstq", headline.NO_TOKENS, "fed-fstq-link")


def summary(key: str, clock_of: dict | None = None) -> dict:
    """A study's JSON as `headline.summarise` writes it, with made-up values."""
    arms = [
        {
            "arm": name,
            "reached": "3/3",
            "bits_per_param": 16.0 if name == "fedavg-fp16" else 4.06,
            "compute_overhead_pct": [0.5, 0.1],
            "final_vs_baseline": [0.0, 0.01],
            "rounds_to_target": [4.0, 1.0],
            "time_to_target_s": [100.0 + i, 10.0],
            "uplink_to_target_mb": [5.0, 1.0],
            "bytes_ratio": [1.0 if name == "fedavg-fp16" else 3.9, 0.1],
            "time_reduction_pct": [float(i), 1.0],
            "final": [0.9, 0.01],
            "uplink_total_mb": [10.0, 0.0],
        }
        for i, name in enumerate(ALL_ARMS)
    ]
    controls = {
        f"fed-fstq vs {other}": {"final": [0.01, 0.02], "time_to_target_s": [-3.0, 5.0]}
        for other in (*headline.CONTROLS, headline.NO_TOKENS)
    }
    return {
        "key": key,
        "title": f"Study {key}",
        "scenario": "scenarios/x.toml",
        "overrides": [],
        "seeds": [0, 1, 2],
        "metric": "answer_accuracy",
        "target": 0.6,
        "baseline": "fedavg-fp16",
        "parameters": 1000,
        "setup": {"rounds": 8},
        "arms": arms,
        "controls": controls,
        **({"clock_of": clock_of} if clock_of else {}),
        "figures": [f"{key}-quality-time.png"],
        "host_minutes": 10.0,
        "cache_looked": 4,
        "cache_hits": 2,
        "cache_saved_minutes": 1.0,
    }


def document(*studies: dict, pending: list | None = None, budget: dict | None = None) -> dict:
    return {
        "command": "make results",
        "paper": headline.PAPER,
        "token_recall": None,
        "studies": list(studies),
        "budget": budget,
        "pending": pending or [],
    }


def test_network_twins_render_as_one_quality_experiment_with_several_clocks():
    lte = summary("llm-lte")
    mbps = summary("llm-20mbps", {"study": "llm-lte", "differs": ["fed-fstq-link"]})
    mbps["controls"]["fed-fstq vs loss-tokens-fstq"]["time_to_target_s"] = [-7.5, 2.0]
    text = render(document(lte, mbps))
    assert "## Study llm-lte (`llm-lte`)" in text and "## Study llm-20mbps" not in text
    assert "One quality experiment on 2 clocks (`llm-lte`, `llm-20mbps`)" in text
    assert "**Clock: Study llm-20mbps** (`llm-20mbps`)" in text
    assert "every arm but fed-fstq-link, whose messages depend on the link" in text
    row = next(line for line in text.splitlines() if line.startswith("| fed-fstq vs loss"))
    assert row.endswith("| -3.0 ± 5.0 s | -7.5 ± 2.0 s |")
    assert "| time to target (difference), `llm-20mbps` |" in text
    # the quality claims (Fisher overhead, final quality: 5 columns) once per experiment; the
    # time and bytes to target (7 columns) on every clock
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| llm-")]
    assert [r[0] for r in rows if len(r) == 5] == ["| llm-lte"]
    assert [r[0] for r in rows if len(r) == 7].count("| llm-20mbps") == 2
    assert "![llm-20mbps-quality-time.png](results/llm-20mbps-quality-time.png)" in text


def test_studies_not_yet_run_are_listed_and_no_old_numbers_shown():
    pending = [{"key": "llm-lte", "title": "LLM", "state": "1 of 3 seeds finished"}]
    text = render(document(pending=pending))
    assert "**Not yet (re)run on this code.**" in text
    assert "- `llm-lte` (LLM): 1 of 3 seeds finished." in text
    assert "## Headline" not in text and "host hours" not in text
    recall = {"policies": {"fisher": {"recall": 0.5, "keep_share": 0.5, "informative_tokens": 9}}}
    assert "Not yet" not in render({**document(summary("hetero-lte")), "token_recall": recall})


def test_mask_diagnostics_are_rendered_and_coinciding_masks_said_so():
    results = document()
    study = summary("hetero-lte")
    prefix = {"kept_share": 0.5, "unscored_share": 0.6, "prefix_jaccard": 0.97, "prefix_rows": 0.95}
    selects = {"kept_share": 0.5, "unscored_share": 0.3, "prefix_jaccard": 0.4, "prefix_rows": 0.02}
    study["masks"] = {"fed-fstq": prefix, "random-tokens-fstq": prefix, "loss-tokens-fstq": selects}
    text = render({**results, "studies": [study]})
    assert "| fed-fstq | 0.50 | 0.60 | 0.97 | 0.95 |" in text
    assert "| loss-tokens-fstq | 0.50 | 0.30 | 0.40 | 0.02 |" in text
    rows = {line.split(" | ")[0]: line for line in text.splitlines() if " vs " in line}
    assert "| the masks coincide |" in rows["| fed-fstq vs random-tokens-fstq"]
    assert "the masks coincide" not in rows["| fed-fstq vs loss-tokens-fstq"]


TOKENS = {"keep": 0.5, "refresh": 2}  # 3 local steps: the third is masked
ARMS = [
    {"name": "fedavg-fp16", "codec": "fp16"},
    *(
        {"name": name, "codec": "fstq", "token_policy": policy, "token_options": TOKENS}
        for name, policy in (
            ("random-tokens-fstq", "random"),
            ("loss-tokens-fstq", "loss"),
            ("fed-fstq", "fisher"),
        )
    ),
    {
        "name": "fed-fstq-link",
        "codec": "fstq",
        "codec_options": {"budget": "link", "upload_s": 0.5},
        "token_policy": "fisher",
        "token_options": TOKENS,
    },
]


@pytest.mark.slow
def test_tiny_study_end_to_end(tiny_models, write_scenario, tmp_path):
    """Run two seeds of a tiny real study and its network twin from empty folders, summarise,
    render; the twin is another clock on the same training; a rerun trains nothing."""
    raw = real_scenario_dict(tiny_models["bert"], methods=ARMS, evaluation={"targets": [0.3]})
    raw["server"]["rounds"] = 2
    scenario = write_scenario(raw)
    study = headline.Study("tiny", "Tiny", str(scenario), "accuracy", 0.3, seeds=2)
    twin = headline.Study(
        "tiny-20", "Tiny 20", str(scenario), "accuracy", 0.3, (headline.TWENTY_MBPS,), seeds=2
    )
    runs, docs, cache = tmp_path / "runs", tmp_path / "docs", str(tmp_path / "cache")
    before = headline.collect(runs, docs, (study, twin))
    assert before["studies"] == [] and [p["state"] for p in before["pending"]] == 2 * [
        "not yet run"
    ]
    headline.run(runs, (study, twin), jobs=1, cache=cache)
    results = headline.collect(runs, docs, (study, twin))
    assert json.loads((docs / "results" / "results.json").read_text()) == results
    assert results["pending"] == [] and "clock_of" not in results["studies"][0]
    shared = results["studies"][1]["clock_of"]
    assert shared["study"] == "tiny" and set(shared["differs"]) <= {"fed-fstq-link"}
    assert results["studies"][1]["figures"] == ["tiny-20-quality-time.png"]
    summary = results["studies"][0]
    assert summary["seeds"] == [0, 1]
    arms = {a["arm"]: a for a in summary["arms"]}
    reached = 0
    for seed in (0, 1):
        path = runs / "tiny" / f"seed-{seed}" / "fedavg-fp16" / "evals.csv"
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        reached += any(r["metric"] == "accuracy" and float(r["value"]) >= 0.3 for r in rows)
    assert arms["fedavg-fp16"]["reached"] == f"{reached}/2"
    assert arms["fedavg-fp16"]["bytes_ratio"][0] in (None, pytest.approx(1.0))
    assert arms["fed-fstq"]["bits_per_param"] < arms["fedavg-fp16"]["bits_per_param"] / 2
    assert set(summary["controls"]) == {f"fed-fstq vs {c}" for c in headline.CONTROLS}
    masks = summary["masks"]  # from every token-policy arm's masks.csv
    assert set(masks) == {arm["name"] for arm in ARMS if "token_policy" in arm}
    assert all(0.4 < m["kept_share"] < 0.7 and m["prefix_rows"] < 0.5 for m in masks.values())
    assert all((docs / "results" / name).is_file() for name in summary["figures"])
    text = render(results)
    assert "## Tiny (`tiny`)" in text and "| fed-fstq-link |" in text
    assert "**Clock: Tiny 20** (`tiny-20`)" in text
    stamp = _mtimes(runs)
    headline.run(runs, (study, twin), jobs=1, cache=cache)
    assert _mtimes(runs) == stamp
    (runs / "tiny-20" / "seed-1" / "fed-fstq" / "summary.json").unlink()
    assert headline.progress(twin, runs) == "1 of 2 seeds finished"
    assert headline.progress(study, runs) is None


def _mtimes(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*.csv")}


def test_the_other_claims_and_token_recall_are_rendered_with_verdicts():
    results = document()
    study = summary("hetero-lte")
    fstq = next(a for a in study["arms"] if a["arm"] == HEADLINE_ARMS[0])
    fstq["compute_overhead_pct"] = [30.0, 5.0]  # the paper's +17 % lies below the interval
    fstq["final_vs_baseline"] = [-0.01, 0.004]
    recall = {"policies": {"fisher": {"recall": 0.1, "keep_share": 0.5, "informative_tokens": 8}}}
    text = render({**results, "studies": [study], "token_recall": recall})
    assert "Fisher compute overhead (paper +17 %)" in text
    row = next(line for line in text.splitlines() if line.startswith(f"| {study['key']} | 30"))
    assert "| higher |" in row and "| yes |" in row
    assert "## Token Recall" in text and "| fisher | 0.100 | 0.50 | 8 |" in text
    for arm in study["arms"]:  # a study summarised before the overhead was recorded
        arm.pop("compute_overhead_pct")
    assert "Fisher compute overhead" not in render({**results, "studies": [study]})


def test_a_damaged_results_json_is_named_with_the_fix(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "results.json").write_text("{bad", encoding="utf-8")
    with pytest.raises(SystemExit, match=r"results\.json: missing or damaged.*make results"):
        headline.load(tmp_path)
