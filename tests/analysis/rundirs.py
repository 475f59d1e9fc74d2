"""Hand-made run directories with known values, written with the recorder's real columns
(a helper module, not a conftest: a second conftest would shadow tests/conftest.py's imports)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from simulator.recorder import SCHEMA_VERSION, TABLES

# Two arms, two rounds of two clients each. Target 0.6: dense at 20 s / 8000 B, small at
# 10 s / 1000 B (8x less uplink, 50 % faster); target 0.8 is never reached.
ARMS = {
    "dense": {"duration": 10.0, "client_bytes": 2000, "acc": (0.1, 0.5, 0.7)},
    "small": {"duration": 5.0, "client_bytes": 250, "acc": (0.1, 0.4, 0.65)},
}


def write_table(path: Path, table: str, rows: list[dict]) -> None:
    """A CSV with the recorder's columns; columns a row leaves out are empty."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=TABLES[table], restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def write_arm(folder: Path, arm: str, seed: int, acc_shift: float = 0.0) -> Path:
    """One arm of ARMS: in every round client 0 (the straggler) downloads 1 s, computes 40 % of
    the round and uploads until its end; client 1 downloads 1 s, computes 2 s, uploads 1 s."""
    spec = ARMS[arm]
    folder.mkdir(parents=True)
    d, nbytes = spec["duration"], spec["client_bytes"]
    rounds, clients, evals = [], [], []
    for r in (1, 2):
        start = (r - 1) * d
        phase = "upload" if r == 1 else "compute"
        rounds.append(
            dict(round=r, start_s=start, end_s=start + d, duration_s=d, selected=2, received=2,
                 uplink_bytes=2 * nbytes, downlink_bytes=8000, energy_j_mean=5.0 * r,
                 energy_j_max=8.0 * r, slowest_client=0, slowest_phase=phase)
        )  # fmt: skip
        for client, phases in ((0, (1.0, 0.4 * d, 0.6 * d - 1.0)), (1, (1.0, 2.0, 1.0))):
            t = [start, start + phases[0], start + phases[0] + phases[1], start + sum(phases)]
            clients.append(
                dict(round=r, client=client, device="phone", status="ok", download_start_s=t[0],
                     download_end_s=t[1], compute_start_s=t[1], compute_end_s=t[2],
                     upload_start_s=t[2], upload_end_s=t[3], uplink_bytes=nbytes, energy_j=1.0)
            )  # fmt: skip
        clients.append(dict(round=r, client=2, device="phone", status="dropped", phase="compute"))
    for r, value in enumerate(spec["acc"]):
        evals.append(
            dict(round=r, time_s=r * d, uplink_bytes_cum=r * 2 * nbytes, metric="accuracy",
                 value=value + acc_shift, source="surrogate")
        )  # fmt: skip
    for table, rows in (("rounds", rounds), ("clients", clients), ("evals", evals)):
        write_table(folder / f"{table}.csv", table, rows)
    manifest = {"arm": arm, "seed": seed, "scenario": "hand", "schema_version": SCHEMA_VERSION}
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    (folder / "summary.json").write_text(json.dumps({"complete": True}), encoding="utf-8")
    return folder


def hand_run(tmp_path: Path) -> Path:
    """A run directory of ARMS, seed 1."""
    for arm in ARMS:
        write_arm(tmp_path / "run" / arm, arm, 1)
    return tmp_path / "run"


def hand_sweep(tmp_path: Path) -> Path:
    """A sweep folder of ARMS over seeds 1-3; seed s shifts accuracy by 0.01 · (s − 1)."""
    for seed in (1, 2, 3):
        for arm in ARMS:
            write_arm(tmp_path / "sweep" / f"seed-{seed}" / arm, arm, seed, 0.01 * (seed - 1))
    return tmp_path / "sweep"


def write_scenario(
    run: Path, methods: list[str], metric: str = "accuracy", targets=(0.6,), classes=None
) -> None:
    """The run directory's resolved scenario.json, with what the figures read from it."""
    scenario = {
        "name": "hand",
        "evaluation": {"metric": metric, "targets": list(targets)},
        "training": {"data": {"classes": classes}},
        "methods": [{"name": m} for m in methods],
    }
    (run / "scenario.json").write_text(json.dumps(scenario), encoding="utf-8")


def add_metric(run: Path, metric: str, first: bool = True) -> None:
    """Give every evaluation of every arm a second metric (value + 1), listed first or last."""
    for path in run.glob("*/evals.csv"):
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        extra = [dict(r, metric=metric, value=float(r["value"]) + 1) for r in rows]
        write_table(path, "evals", extra + rows if first else rows + extra)


def add_views(run: Path) -> None:
    """Per arm (of a run or a sweep): group rows (de, NA) and the clients: summaries beside each
    overall accuracy, and client_evals.csv for the last round."""
    for path in run.rglob("evals.csv"):
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        extra = []
        for row in rows:
            value = float(row["value"])
            shifts = {"de": 0.1, "NA": -0.1, "clients:mean": 0.0, "clients:worst10": -0.2}
            shifts["clients:std"] = -value + 0.05
            for group, shift in shifts.items():
                extra.append(dict(row, group=group, value=value + shift))
        write_table(path, "evals", rows + extra)
        last = max(int(r["round"]) for r in rows)
        clients = path.parent / "client_evals.csv"
        clients.write_text(
            "round,client,metric,value\n"
            + "".join(f"{last},{c},accuracy,{0.2 * c}\n" for c in range(4)),
            encoding="utf-8",
        )
