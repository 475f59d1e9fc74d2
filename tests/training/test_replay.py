"""Train once, replay every network (simulator/training/replay.py): the cache never changes a
run directory's bytes, every input of a client-round is in its key, and a synchronous run
re-timed under another network trains nothing again."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import real_scenario_dict

from simulator.cache import ReplayCache
from simulator.experiment import prepare_out, run_scenario
from simulator.scenario import load_scenario
from simulator.training.client import Arm, Job
from simulator.training.replay import eval_key, task_fingerprint, update_key

TABLES = ("rounds.csv", "clients.csv", "evals.csv", "partition.csv", "summary.json")
FSTQ = {"name": "fstq", "codec": "fstq", "token_policy": "fisher"}
LINK = {
    "name": "link",
    "codec": "fstq",
    "codec_options": {"budget": "link", "upload_s": 0.05},
    "token_policy": "fisher",
}
EF = {"name": "ef", "codec": "signsgd"}


def _run(write_scenario, raw: dict, out: Path, cache: ReplayCache | None, *sets: str) -> list:
    path = write_scenario(raw)
    scenario = load_scenario(path, sets)
    prepare_out(out, path, scenario)
    return run_scenario(scenario, out, progress=False, cache=cache)


def _same_files(a: list[Path], b: list[Path]) -> None:
    for x, y in zip(a, b, strict=True):
        for name in TABLES:
            assert (x / name).read_bytes() == (y / name).read_bytes(), (x.name, name)


def _cache_stats(arms: list[Path]) -> list[dict]:
    return [json.loads((arm / "manifest.json").read_text())["cache"] for arm in arms]


CASES = {
    "sync": ({}, []),
    "deadline": ({"server": {"rounds": 3, "strategy": "deadline", "percentile": 50}}, []),
    "overselect": ({"server": {"rounds": 3, "strategy": "overselect", "epsilon": 0.5}}, []),
    "fedbuff": (
        {"server": {"rounds": 3, "strategy": "fedbuff", "concurrency": 4, "buffer_size": 2}},
        [],
    ),
    "faults": ({"faults": {"drop": 0.2, "corrupt": 0.2, "truncate": 0.1}}, []),
    "process": ({}, ["training.executor=process", "training.workers=2"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_cached_run_writes_the_bytes_of_an_uncached_one(
    write_scenario, tiny_models, tmp_path, case
):
    sections, sets = CASES[case]
    raw = real_scenario_dict(tiny_models["bert"], methods=[LINK, EF], **sections)
    plain = _run(write_scenario, raw, tmp_path / "plain", None, *sets)
    cache = ReplayCache(tmp_path / "cache")
    cold = _run(write_scenario, raw, tmp_path / "cold", cache, *sets)
    warm = _run(write_scenario, raw, tmp_path / "warm", cache, *sets)
    _same_files(plain, cold)
    _same_files(plain, warm)
    # a cold run computes (only an evaluation of a state seen before is reused: the arms'
    # common initial adapter, or a round that received nothing)
    assert all(s["misses"] > s["hits"] for s in _cache_stats(cold))
    assert all(s["misses"] == 0 and s["hits"] > 0 for s in _cache_stats(warm))
    assert all(s["saved_host_s"] > 0 for s in _cache_stats(warm))


def test_another_network_retrains_only_the_link_aware_arm(write_scenario, tiny_models, tmp_path):
    raw = real_scenario_dict(tiny_models["bert"], methods=[FSTQ, LINK])
    cache = ReplayCache(tmp_path / "cache")
    _run(write_scenario, raw, tmp_path / "first", cache)
    slower = 'network.uplink={kind="constant",mbps=0.5}'
    replayed = _run(write_scenario, raw, tmp_path / "replay", cache, slower)
    plain = _run(write_scenario, raw, tmp_path / "plain", None, slower)
    _same_files(plain, replayed)
    fstq, link = _cache_stats(replayed)
    assert fstq["misses"] == 0  # the learning trajectory does not depend on the links
    assert link["misses"] > 0  # its byte budget, and so its messages, do
    first = (tmp_path / "first" / "fstq" / "evals.csv").read_text().splitlines()
    again = (tmp_path / "replay" / "fstq" / "evals.csv").read_text().splitlines()
    assert [r.split(",")[3:] for r in first] == [r.split(",")[3:] for r in again]
    assert first != again  # the same quality, at other times


def _job(**change) -> Job:
    values = {
        "client": 1,
        "round": 2,
        "global_flat": np.arange(4, dtype=np.float32),
        "state": {"residual": np.zeros(4, np.float32)},
        "budget_bytes": None,
    }
    return Job(**{**values, **change})


ARM = Arm("a", "fstq", {}, "fisher", {}, False, None)


@pytest.mark.parametrize(
    "change",
    [
        {"client": 2},
        {"round": 3},
        {"global_flat": np.array([0, 1, 2, 3.0000005], np.float32)},
        {"state": {"residual": np.ones(4, np.float32)}},
        {"state": {}},
        {"budget_bytes": 100},
        {"shared": {"control": np.ones(4, np.float32)}},
    ],
)
def test_every_input_of_a_client_round_changes_its_key(change):
    assert update_key("fp", ARM, _job()) == update_key("fp", ARM, _job())
    assert update_key("fp", ARM, _job(**change)) != update_key("fp", ARM, _job())


@pytest.mark.parametrize(
    "field",
    [
        "codec",
        "codec_options",
        "token_policy",
        "token_options",
        "freeze_a",
        "local_steps",
        "client",
        "client_options",
        "downlink_codec",
    ],
)
def test_every_method_setting_changes_the_key_but_the_arm_name_does_not(field):
    other = {
        "codec": "qsgd",
        "codec_options": {"bits": 4},
        "token_policy": "loss",
        "token_options": {"keep": 0.3},
        "freeze_a": True,
        "local_steps": 7,
        "client": "fedprox",
        "client_options": {"mu": 0.1},
        "downlink_codec": "fp32",
    }[field]
    changed = Arm(**{**ARM.__dict__, field: other})
    assert update_key("fp", changed, _job()) != update_key("fp", ARM, _job())
    renamed = Arm(**{**ARM.__dict__, "name": "b"})
    assert update_key("fp", renamed, _job()) == update_key("fp", ARM, _job())
    assert update_key("other", ARM, _job()) != update_key("fp", ARM, _job())


def test_the_task_fingerprint_sees_the_training_seed_population_and_weights(
    write_scenario, tiny_models
):
    from simulator.training.task import RealTask

    def fingerprint(model, *sets: str) -> str:
        raw = real_scenario_dict(tiny_models[model])
        scenario = load_scenario(write_scenario(raw), sets)
        return task_fingerprint(scenario, RealTask(scenario))

    base = fingerprint("bert")
    assert fingerprint("bert") == base
    for sets in (
        ["training.local.lr=0.001"],
        ["training.lora.rank=4"],
        ["training.threads=1"],
        ["seed=1"],
        ["population.clients=9"],
        ["training.data.samples=401"],
    ):
        assert fingerprint("bert", *sets) != base, sets
    assert fingerprint("gpt2") != base


def test_evaluations_are_keyed_by_state_settings_and_answers(write_scenario, tiny_models):
    scenario = load_scenario(write_scenario(real_scenario_dict(tiny_models["bert"])))
    flat = np.arange(4, dtype=np.float32)
    key = eval_key("fp", scenario, ARM, flat, False, False)
    assert eval_key("fp", scenario, ARM, flat.copy(), False, False) == key
    assert eval_key("fp", scenario, ARM, flat + 1, False, False) != key
    assert eval_key("fp", scenario, ARM, flat, True, False) != key
    assert eval_key("fp", scenario, ARM, flat, False, True) != key  # per-client evaluation
    other = load_scenario(
        write_scenario(real_scenario_dict(tiny_models["bert"])), ["evaluation.every=2"]
    )
    assert eval_key("fp", other, ARM, flat, False, False) != key


def test_the_replay_command_retimes_a_run_and_says_what_it_reused(
    write_scenario, tiny_models, tmp_path, capsys
):
    from simulator.cli import main

    path = write_scenario(real_scenario_dict(tiny_models["bert"], methods=[FSTQ]))
    cache = str(tmp_path / "cache")
    first, again = tmp_path / "first", tmp_path / "again"
    assert main(["run", str(path), "--out", str(first), "--quiet", "--cache", cache]) == 0
    slower = 'network.uplink={kind="constant",mbps=0.5}'
    code = main(
        ["replay", str(first), "--set", slower, "--out", str(again), "--quiet", "--cache", cache]
    )
    assert code == 0
    said = capsys.readouterr().out
    assert "reused 16 of 16 client-rounds and evaluations (100 %)" in said  # 12 updates, 4 evals
    assert json.loads((again / "scenario.json").read_text())["network"]["uplink"]["mbps"] == 0.5
    first_rounds = (first / "fstq" / "rounds.csv").read_text()
    assert (again / "fstq" / "rounds.csv").read_text() != first_rounds  # re-timed
    assert (
        main(["run", str(path), "--out", str(tmp_path / "x"), "--cache", cache, "--no-cache"]) == 2
    )


def test_damaged_entries_are_recomputed_and_the_run_is_unchanged(
    write_scenario, tiny_models, tmp_path
):
    raw = real_scenario_dict(tiny_models["bert"], methods=[EF])
    cache = ReplayCache(tmp_path / "cache")
    first = _run(write_scenario, raw, tmp_path / "first", cache)
    messages = sorted((tmp_path / "cache" / "update").rglob("*.msg"))
    for path in messages[::2]:  # every other message: a flipped byte, or cut short
        data = path.read_bytes()
        path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]) if len(data) % 2 else data[:10])
    again = _run(write_scenario, raw, tmp_path / "again", ReplayCache(tmp_path / "cache"))
    _same_files(first, again)
    (stats,) = _cache_stats(again)
    assert stats["corrupt"] == len(messages[::2]) and stats["misses"] == stats["corrupt"]


@pytest.mark.slow
def test_edited_records_are_recomputed_and_the_run_is_that_of_a_cold_one(
    write_scenario, tiny_models, tmp_path
):
    raw = real_scenario_dict(tiny_models["bert"], methods=[EF], server={"rounds": 2})
    root = tmp_path / "cache"
    first = _run(write_scenario, raw, tmp_path / "first", ReplayCache(root))
    updates = sorted((root / "update").rglob("*.json"))[:4]
    evals = sorted((root / "eval").rglob("*.json"))
    assert evals
    for i, path in enumerate(updates + evals):
        meta = json.loads(path.read_text())
        if path in evals:
            meta["meta"]["metrics"]["accuracy"] = 0.99  # an edited evaluation
        elif i % 2:
            meta["meta"]["num_samples"] += 1  # an edited sample count
        else:
            meta["meta"]["samples"] = meta["meta"].pop("num_samples")  # a renamed key
        path.write_text(json.dumps(meta, indent=1))
    again = _run(write_scenario, raw, tmp_path / "again", ReplayCache(root))
    _same_files(first, again)
    (stats,) = _cache_stats(again)
    assert stats["corrupt"] == 4 + len(evals) and stats["misses"] == stats["corrupt"]


USER_CODEC = """
from simulator.methods.dense import DenseFP16

SCALE = {scale}


class Scaled(DenseFP16):
    '''fp16 of the update times SCALE.'''

    codec_id = 77

    def encode(self, update, context):
        return super().encode(update * SCALE, context)
"""


@pytest.mark.slow
def test_an_edited_user_codec_is_not_answered_from_the_cache(
    write_scenario, tiny_models, tmp_path, monkeypatch
):
    import importlib
    import sys

    module = tmp_path / "plugins" / "scaledcodec.py"
    module.parent.mkdir()
    module.write_text(USER_CODEC.format(scale="1.0"), encoding="utf-8")
    monkeypatch.syspath_prepend(str(module.parent))
    monkeypatch.delitem(sys.modules, "scaledcodec", raising=False)
    raw = real_scenario_dict(
        tiny_models["bert"],
        methods=[{"name": "mine", "codec": "scaledcodec:Scaled"}],
        server={"rounds": 2},
    )
    cache = ReplayCache(tmp_path / "cache")
    before = _run(write_scenario, raw, tmp_path / "before", cache)
    module.write_text(USER_CODEC.format(scale="0.25"), encoding="utf-8")  # the user edits it
    del sys.modules["scaledcodec"]  # as a new process would, import the edited file
    importlib.invalidate_caches()
    after = _run(write_scenario, raw, tmp_path / "after", cache)
    plain = _run(write_scenario, raw, tmp_path / "plain", None)
    _same_files(plain, after)
    (stats,) = _cache_stats(after)
    assert stats["misses"] > stats["hits"]  # only the initial evaluation is the same state
    assert (before[0] / "evals.csv").read_bytes() != (after[0] / "evals.csv").read_bytes()


def test_a_cache_path_that_is_a_file_is_an_error_before_the_run_starts(
    write_scenario, tiny_models, tmp_path, capsys
):
    from simulator.cli import main

    path = write_scenario(real_scenario_dict(tiny_models["bert"]))
    taken = tmp_path / "cache.txt"
    taken.write_text("not a folder")
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--quiet", "--cache", str(taken)]) == 2
    said = capsys.readouterr().err
    assert f"{taken}: the replay cache must be a writable folder" in said
    assert "Traceback" not in said
    assert not out.exists() and taken.read_text() == "not a folder"


def test_the_dtype_is_in_the_task_fingerprint_and_the_manifest(
    write_scenario, tiny_models, tmp_path
):
    from simulator.training.task import RealTask

    raw = real_scenario_dict(tiny_models["llama"], evaluation={"targets": [10.0]})
    raw["training"] |= {"task": "causal_lm", "partition": {"kind": "iid"}}
    raw["training"]["local"]["seq_len"] = 96  # synthetic instructions are never cut
    path = write_scenario(raw)
    prints = {}
    for dtype in ("auto", "float32", "bfloat16"):
        scenario = load_scenario(path, [f"training.dtype={dtype}"])
        prints[dtype] = task_fingerprint(scenario, RealTask(scenario))
    assert len(set(prints.values())) == 3
    scenario = load_scenario(path, ["training.dtype=bfloat16", "server.rounds=1"])
    prepare_out(tmp_path / "run", path, scenario)
    (arm,) = run_scenario(scenario, tmp_path / "run", progress=False)
    assert json.loads((arm / "manifest.json").read_text())["dtype"] == "bfloat16"
