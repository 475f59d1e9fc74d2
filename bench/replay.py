"""Train once, replay every network: host seconds with and without the replay cache.

1. The three network studies of docs/RESULTS.md (scenarios/headline.toml under the controlled
   20 Mbps uplink, the heterogeneous LTE straggler tail and the Mahimahi replay; one seed),
   each run cold (no cache) and then all three through one fresh cache; target: ≥ 2.5× less
   host time in total (3× would be the ideal: one network's training).
2. The quickstart, cold, then replayed (`fstq-sim replay`'s path) under another network from a
   cache its first run filled: a slower downlink and more latency (the uplink budgets of the
   link-aware arm unchanged), and a slower uplink (which changes them); target: ≤ 10 % of the
   cold host time.

Host seconds are wall seconds around each run (model load included). `--set KEY=VALUE`
shrinks the studies for a quicker measurement (what was used is written into the result).

    .venv/bin/python bench/replay.py [--set server.rounds=4 ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from common import print_table, save

from simulator.cache import ReplayCache
from simulator.experiment import prepare_out, run_scenario
from simulator.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from studies.headline import STUDIES  # noqa: E402

NETWORK_STUDIES = [s for s in STUDIES if s.scenario == "scenarios/headline.toml"]
QUICKSTART = ROOT / "scenarios" / "quickstart.toml"
REPLAYS = {
    "slower downlink, more latency": [
        'network.downlink={kind="ratio",ratio=1.0}',
        "network.latency_ms=150.0",
    ],
    "slower uplink": ['network.uplink={kind="constant",mbps=1.0}'],
}
TARGET_STUDIES_RATIO = 2.5
TARGET_REPLAY_SHARE = 0.10


def _timed(
    scenario_file: Path, sets: list[str], out: Path, cache: ReplayCache | None
) -> tuple[float, dict]:
    scenario = load_scenario(scenario_file, sets)
    prepare_out(out, scenario_file, scenario)
    before = None if cache is None else cache.stats.snapshot()
    start = time.perf_counter()
    run_scenario(scenario, out, progress=False, cache=cache)
    seconds = time.perf_counter() - start
    return seconds, ({} if cache is None or before is None else cache.stats.since(before))


def network_studies(tmp: Path, size: list[str]) -> dict:
    """Cold vs cached host seconds of the three network studies."""
    rows = []
    cache = ReplayCache(tmp / "studies-cache")
    for study in NETWORK_STUDIES:
        sets = [*study.overrides, *size]
        cold, _ = _timed(ROOT / study.scenario, sets, tmp / f"cold-{study.key}", None)
        cached, stats = _timed(ROOT / study.scenario, sets, tmp / f"cached-{study.key}", cache)
        rows.append(
            {
                "study": study.key,
                "cold_s": round(cold, 1),
                "cached_s": round(cached, 1),
                "reused": f"{stats['hits']}/{stats['hits'] + stats['misses']}",
            }
        )
    cold = sum(r["cold_s"] for r in rows)
    cached = sum(r["cached_s"] for r in rows)
    return {"rows": rows, "cold_s": cold, "cached_s": cached, "ratio": cold / cached}


def quickstart_replays(tmp: Path, size: list[str]) -> dict:
    """Cold host seconds of the quickstart and of replays under other networks."""
    cache = ReplayCache(tmp / "quickstart-cache")
    cold, _ = _timed(QUICKSTART, size, tmp / "qs-cold", None)
    _timed(QUICKSTART, size, tmp / "qs-first", cache)
    rows = []
    for name, sets in REPLAYS.items():
        seconds, stats = _timed(QUICKSTART, [*size, *sets], tmp / f"qs-{len(rows)}", cache)
        looked = stats["hits"] + stats["misses"]
        rows.append(
            {
                "network": name,
                "replay_s": round(seconds, 1),
                "share_of_cold": round(seconds / cold, 3),
                "reused": f"{stats['hits']}/{looked}",
            }
        )
    return {"cold_s": round(cold, 1), "rows": rows}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        studies = network_studies(tmp, args.set)
        replays = quickstart_replays(tmp, args.set)
    print_table(
        studies["rows"],
        {"study": "study", "cold_s": "cold s", "cached_s": "cached s", "reused": "reused"},
    )
    print(
        f"total {studies['cold_s']:.1f} s cold, {studies['cached_s']:.1f} s cached: "
        f"{studies['ratio']:.2f}x"
    )
    print_table(
        replays["rows"],
        {
            "network": "replay of the quickstart",
            "replay_s": "s",
            "share_of_cold": "of cold",
            "reused": "reused",
        },
    )
    result = {
        "benchmark": "replay_cache",
        "command": "python bench/replay.py" + "".join(f" --set {s}" for s in args.set),
        "size_overrides": args.set,
        "network_studies": studies,
        "quickstart": replays,
        "target_studies_ratio": TARGET_STUDIES_RATIO,
        "target_replay_share": TARGET_REPLAY_SHARE,
        "met": studies["ratio"] >= TARGET_STUDIES_RATIO
        and all(r["share_of_cold"] <= TARGET_REPLAY_SHARE for r in replays["rows"]),
    }
    save("replay", result)
    return result


if __name__ == "__main__":
    main()
