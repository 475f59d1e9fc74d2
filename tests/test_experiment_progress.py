"""The progress bar: an ETA from the first finished client-round on (a first LLM round takes
minutes, and the bar read "?" until it ended), and the latest quality beside it."""

from __future__ import annotations

import io
import time

from conftest import scenario_dict
from tqdm import tqdm

from simulator.experiment import BAR_FORMAT, ArmProgress, prepare_out, run_scenario
from simulator.recorder import EvalRow
from simulator.scenario import scenario_from_dict


def _line(bar: tqdm) -> str:
    return tqdm.format_meter(**bar.format_dict)


def test_eta_from_the_first_client_round_and_the_quality_after_an_evaluation(tmp_path):
    scenario = scenario_from_dict(scenario_dict(), "unit", base=tmp_path)  # 4 clients a round
    bar = tqdm(total=6, file=io.StringIO(), bar_format=BAR_FORMAT)
    progress = ArmProgress(bar, "dense", scenario)
    assert "<?" in _line(bar)  # nothing finished: no rate yet
    time.sleep(0.02)
    progress.client_done()
    assert bar.n == 0.25
    assert "<?" not in _line(bar) and "0.2/6 rounds" in _line(bar)  # an ETA after one client
    for _ in range(5):  # more client-rounds than a round has never make a whole round
        progress.client_done()
    assert bar.n == 0.99
    progress.round_done({"evals": [EvalRow(1, 12.5, 4_000_000, "accuracy", 0.61234, "s")]})
    assert bar.n == 1.0
    assert "dense | accuracy 0.6123 @ r1" in _line(bar)
    progress.client_done()
    progress.round_done({"rounds": []})  # no evaluation: the last quality stays
    assert bar.n == 2.0 and "accuracy 0.6123 @ r1" in _line(bar)
    progress.show("training 4 clients at 30.0 s")
    assert "accuracy 0.6123 @ r1 | training 4 clients at 30.0 s" in _line(bar)


def test_a_run_shows_whole_rounds_and_the_final_quality(tmp_path, capsys):
    scenario = scenario_from_dict(
        scenario_dict(server={"rounds": 3}, evaluation={"metric": "accuracy", "targets": [0.5]}),
        "unit",
        base=tmp_path,
    )
    prepare_out(tmp_path / "run", None, scenario)
    run_scenario(scenario, tmp_path / "run", progress=True)
    last = capsys.readouterr().err.split("\r")[-1]
    assert "3.0/3 rounds" in last and "accuracy " in last and "@ r3" in last
