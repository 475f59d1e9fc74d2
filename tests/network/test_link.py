"""Per-client links: latency, loss, scale, offsets, ratio-derived directions, real traces."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from simulator.network.link import build_links
from simulator.scenario import Network


def _network(**kw) -> Network:
    base = {"uplink": {"kind": "constant", "mbps": 8.0}, "downlink": {"kind": "unlimited"}}
    return Network.model_validate(base | kw)


def test_latency_and_loss_are_added_to_constant_links():
    up, down = build_links(_network(latency_ms=50.0, loss=0.2), 3, seed=0)
    # 1 MB at 8 Mbps = 1 s; 20% loss -> 1.25 s of capacity; plus 50 ms
    assert up.transfer_time(1, 1_000_000, 7.0) == pytest.approx(1.3)
    assert down.transfer_time(1, 10**9, 7.0) == pytest.approx(0.05)
    assert up.delivered_bytes(1, 0.0, 0.05) == 0.0
    assert up.delivered_bytes(1, 0.0, 0.05 + 1.25) == pytest.approx(1_000_000)
    assert math.isinf(down.delivered_bytes(0, 0.0, 1.0)) and math.isinf(down.mean_bps(0))


def test_ratio_direction_shares_trace_and_offset_and_scales_capacity():
    net = _network(uplink={"kind": "straggler_tail"}, downlink={"kind": "ratio", "ratio": 5.0})
    up, down = build_links(net, 50, seed=3)
    assert down.traces is up.traces and down.offset_s == up.offset_s
    for client in (0, 17, 49):
        assert down.mean_bps(client) == pytest.approx(5 * up.mean_bps(client))
        assert down.transfer_time(client, 5e6, 100.0) == pytest.approx(
            up.transfer_time(client, 1e6, 100.0)
        )


def test_links_are_seeded_and_offsets_spread_over_the_period():
    net = _network(uplink={"kind": "straggler_tail"})
    a, _ = build_links(net, 200, seed=1)
    b, _ = build_links(net, 200, seed=1)
    c, _ = build_links(net, 200, seed=2)
    assert a.scale == b.scale and a.offset_s == b.offset_s and a.scale != c.scale
    offsets = np.array(a.offset_s)
    assert offsets.min() >= 0 and offsets.max() < 3600 and offsets.std() > 500


def test_real_mahimahi_pair_with_round_robin_assignment(shared_traces):
    folder = shared_traces / "mahimahi"
    net = _network(
        uplink={
            "kind": "trace",
            "format": "mahimahi",
            "files": [str(folder / "ATT-LTE-driving.up"), str(folder / "TMobile-LTE-short.up")],
            "assign": "round_robin",
        },
    )
    up, _ = build_links(net, 4, seed=0)
    assert up.trace_index == [0, 1, 0, 1]
    # long-run capacities are the files' means (traces.md: 0.83 and 13.32 Mbps)
    assert up.mean_bps(0) / 1e6 == pytest.approx(0.83, abs=0.01)
    assert up.mean_bps(1) / 1e6 == pytest.approx(13.32, abs=0.01)
    # a 1 MB upload needs 667 packets: the slow ATT uplink takes far longer than T-Mobile's
    assert up.transfer_time(0, 1e6, 0.0) > 5 * up.transfer_time(1, 1e6, 0.0)


def test_paired_downlink_replays_the_same_recording_from_the_same_offset(shared_traces):
    folder = shared_traces / "mahimahi"
    ups = sorted(str(p) for p in folder.glob("*.up"))
    downs = sorted(str(p) for p in folder.glob("*.down"))
    net = _network(
        uplink={"kind": "trace", "format": "mahimahi", "files": ups},
        downlink={"kind": "trace", "format": "mahimahi", "files": downs, "assign": "paired"},
    )
    up, down = build_links(net, 40, seed=3)
    assert len(set(up.trace_index)) > 3  # random assignment, seeded
    for client in range(40):
        up_name = up.traces[up.trace_index[client]].name
        down_name = down.traces[down.trace_index[client]].name
        assert up_name.removesuffix(".up") == down_name.removesuffix(".down")
    assert down.offset_s == up.offset_s
    # T-Mobile LTE downlink averages 16.70 Mbps (traces.md), not its uplink's 13.32
    tmobile = next(c for c in range(40) if "TMobile-LTE" in up.traces[up.trace_index[c]].name)
    assert down.mean_bps(tmobile) / 1e6 == pytest.approx(16.70, abs=0.01)


def _trace_scenario(write_scenario, files: list[str], **options) -> object:
    from conftest import scenario_dict

    raw = scenario_dict()
    raw["network"]["uplink"] = {
        "kind": "trace",
        "format": "csv",
        "files": files,
        "options": {"rate_unit": "Mbps", **options},
    }
    return write_scenario(raw)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("traces/**/*.csv", ["a.csv", "lte/b.csv", "lte/city/c.csv"]),
        ("traces/*/*.csv", ["lte/b.csv"]),
        ("traces/*/city/*.csv", ["lte/city/c.csv"]),
        ("traces/l?e/**", ["lte/b.csv", "lte/city/c.csv"]),  # folders are not trace files
    ],
)
def test_trace_files_take_full_glob_patterns(write_scenario, tmp_path, pattern, expected):
    from simulator.scenario import load_scenario

    for name in ("a.csv", "lte/b.csv", "lte/city/c.csv"):
        path = tmp_path / "traces" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("0,5\n1,7\n")
    scenario = load_scenario(_trace_scenario(write_scenario, [pattern]))
    root = tmp_path / "traces"
    assert [str(Path(f).relative_to(root)) for f in scenario.network.uplink.files] == expected
    absolute = load_scenario(_trace_scenario(write_scenario, [str(root / pattern[7:])]))
    assert absolute.network.uplink.files == scenario.network.uplink.files


def test_a_pattern_matching_only_folders_matches_no_file(write_scenario, tmp_path):
    from simulator.errors import ScenarioError
    from simulator.scenario import load_scenario

    (tmp_path / "traces" / "lte").mkdir(parents=True)
    with pytest.raises(ScenarioError, match=r"'traces/\*\*' matches no file under"):
        load_scenario(_trace_scenario(write_scenario, ["traces/**"]))


def test_validate_warns_of_a_kbps_trace_read_as_mbps(write_scenario, tmp_path, capsys):
    from simulator.cli import main

    (tmp_path / "lte.csv").write_text("time,kbps\n0,4200\n1,9100\n2,5300\n3,6200\n")
    assert main(["validate", str(_trace_scenario(write_scenario, ["lte.csv"]))]) == 0
    said = capsys.readouterr().err
    assert "warning: uplink of client 0 averages 6.20 Gbps, above the 3.00 Gbps" in said
    assert "options {'rate_unit': 'Mbps'}" in said
