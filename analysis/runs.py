"""Load run directories into tidy pandas frames (reads only files, never simulator internals).

A path may be one arm folder, a run directory (one folder per arm) or a sweep folder
(`seed-<s>/<arm>/`); every row carries the `arm`, `seed` and `scenario` of its arm, read from the
arm's manifest.json, so frames of many runs and seeds concatenate without ambiguity.

Tables written before a column existed load with it filled in (OPTIONAL): evals.csv before
views (schema 3) has only overall rows, clients.csv no training columns. `load_table(runs,
"evals")` gives the overall rows, which every metric and figure uses; `load_views` the per-view
rows (a group or label value, the per-client summary) and `load_client_evals` each client's.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas._libs.parsers import STR_NA_VALUES

from simulator.errors import RunDirError
from simulator.recorder import SCHEMA_VERSION, TABLES, ClientRow, EvalRow, RoundRow

Runs = str | Path | Iterable[str | Path]


@dataclass(frozen=True)
class Arm:
    """One arm of one seed: its folder and the identity its manifest gives it."""

    folder: Path
    arm: str
    seed: int
    scenario: str
    complete: bool  # the arm finished (its summary.json is written); else interrupted or running
    mode: str = ""  # "surrogate" or "real" (older manifests: "")
    version: str = ""  # the fstq-sim version that wrote it ("" when not recorded)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(f"{path}: missing; the arm did not start or was damaged") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{path}: damaged JSON ({exc})") from None


def _arm(folder: Path) -> Arm:
    path = folder / "manifest.json"
    manifest = _read_json(path)
    version = manifest.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise RunDirError(
            f"{path}: schema version {version!r}, this fstq-sim reads up to {SCHEMA_VERSION}; "
            "analyse it with the fstq-sim version that wrote it (or a newer one)"
        )
    summary = folder / "summary.json"
    complete = summary.exists() and bool(_read_json(summary).get("complete"))
    try:
        return Arm(
            folder,
            str(manifest["arm"]),
            int(manifest["seed"]),
            str(manifest["scenario"]),
            complete,
            str(manifest.get("mode", "")),
            str(manifest.get("packages", {}).get("fstq-sim", "")),
        )
    except KeyError as exc:
        raise RunDirError(f"{path}: no {exc} entry; is this a fstq-sim manifest?") from None


def _folders(run: Path) -> list[Path]:
    """Arm folders are found by their manifest, so an arm whose CSVs are gone is named as
    damaged when its tables are read instead of silently left out."""
    if not run.is_dir():
        raise RunDirError(f"{run}: no such folder; give a fstq-sim run, sweep or arm directory")
    if (run / "manifest.json").exists():
        return [run]
    patterns = ("*/manifest.json", "*/*/manifest.json")  # run dir, sweep dir
    found = sorted({p.parent for pattern in patterns for p in run.glob(pattern)})
    if not found:
        raise RunDirError(
            f"{run}: no arm folders with a manifest.json; is this a fstq-sim run or sweep "
            "directory?"
        )
    return found


def find_arms(runs: Runs) -> list[Arm]:
    """Every arm folder under the given run, sweep or arm folders, in path order. Analysis keys
    rows by arm and seed, so an arm name and seed found twice (the same run given twice, or
    two scenarios with the same arm names) is an error, as merging them would mix them; so are
    surrogate and real-training arms together, whose qualities are not comparable."""
    paths = [runs] if isinstance(runs, str | Path) else list(runs)
    arms = [_arm(folder) for run in paths for folder in _folders(Path(run))]
    seen: dict[tuple[str, int], Arm] = {}
    for arm in arms:
        key = (arm.arm, arm.seed)
        if key in seen:
            first = seen[key]
            if first.scenario != arm.scenario:
                where = f"also in scenario {first.scenario!r}"
            elif first.folder.resolve() == arm.folder.resolve():
                where = "given twice"
            else:
                where = "given in two folders"
            raise RunDirError(
                f"{first.folder} and {arm.folder}: arm {arm.arm!r} of scenario "
                f"{arm.scenario!r}, seed {arm.seed}, is {where}, and merging them would mix "
                "them. Fix: give each run once; compare "
                "variants of one scenario (e.g. made with --set) under their own names "
                "(--set name=...)"
            )
        seen[key] = arm
    modes = {a.mode for a in arms if a.mode}
    if len(modes) > 1:
        listed = "; ".join(
            f"{mode}: " + ", ".join(str(a.folder) for a in arms if a.mode == mode)
            for mode in sorted(modes)
        )
        raise RunDirError(
            f"surrogate and real-training runs given together ({listed}); a surrogate's quality "
            "is modelled, not measured, so they cannot be compared as one. Fix: analyse each "
            "mode on its own"
        )
    return arms


def scenarios(arms: list[Arm]) -> list[str]:
    """The scenario names of the arms, in order of first appearance."""
    return list(dict.fromkeys(a.scenario for a in arms))


def resolved_scenario(arm: Arm) -> dict[str, Any]:
    """The resolved scenario an arm ran (its run directory's scenario.json; {} when absent, e.g.
    an arm folder copied on its own)."""
    for folder in (arm.folder, arm.folder.parent):
        if (folder / "scenario.json").is_file():
            return _read_json(folder / "scenario.json")
    return {}


def scenario_metric(arms: list[Arm]) -> str | None:
    """The metric the (first) scenario evaluates its targets on, if it names one."""
    return next((resolved_scenario(a).get("evaluation", {}).get("metric") for a in arms), None)


def arm_order(arms: list[Arm], first: str | None = None) -> list[str]:
    """Arm names in the order the scenario lists its methods (the baseline usually first),
    arms it does not list after them in path order; `first` (the baseline) leads."""
    listed = [m.get("name") for a in arms[:1] for m in resolved_scenario(a).get("methods", [])]
    names = dict.fromkeys(a.arm for a in arms)
    ordered = [n for n in listed if n in names] + [n for n in names if n not in listed]
    if first in names:
        ordered.remove(first)
        ordered.insert(0, first)
    return ordered


# numeric columns per table, from the recorder's row types (str-typed columns are free text)
NUMERIC = {
    table: [name for name, kind in row.__annotations__.items() if "str" not in str(kind)]
    for table, row in (("rounds", RoundRow), ("clients", ClientRow), ("evals", EvalRow))
}


# columns added after schema 3, with what an older table holds instead
OPTIONAL = {
    "evals": {"group": ""},
    "clients": dict.fromkeys(
        ("train_loss_first", "train_loss_last", "tokens_trained", "flop"), np.nan
    ),
}


def _check_rows(path: Path, text: str) -> None:
    """Every row has as many fields as the header: a damaged row is named by its line."""
    reader = csv.reader(io.StringIO(text))
    width = len(next(reader, []))
    for row in reader:
        if len(row) != width:
            raise RunDirError(
                f"{path}, line {reader.line_num}: {len(row)} fields where the header has "
                f"{width}; the row is damaged. Fix: rerun the arm (or resume it after deleting "
                "its damaged rounds)"
            )


def _check_numbers(path: Path, table: str, frame: pd.DataFrame) -> None:
    """Numeric columns hold numbers (or nothing): a damaged value is named by line and column."""
    for column in NUMERIC[table]:
        raw = frame[column]
        bad = pd.to_numeric(raw, errors="coerce").isna() & raw.notna()
        if bad.any():
            index = int(np.flatnonzero(bad.to_numpy())[0])
            raise RunDirError(
                f"{path}, line {index + 2}: {column} = {raw.iloc[index]!r} is not a number; "
                "the row is damaged. Fix: rerun the arm (or resume it after deleting its "
                "damaged rounds)"
            )


def _missing(text: str) -> dict[str, Any]:
    """pandas' default missing-value spellings for every column but `group`, whose values are
    names ("NA" is Namibia's code, "None" a MeSH-free row), only empty there."""
    header = next(csv.reader(io.StringIO(text)), [])
    return {c: [""] if c == "group" else sorted(STR_NA_VALUES) for c in header}


def read_table(arm: Arm, table: str) -> pd.DataFrame:
    """One CSV of one arm, checked for truncation and columns, with the arm's identity."""
    path = arm.folder / f"{table}.csv"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RunDirError(f"{path}: missing; the arm did not start or was damaged") from None
    if raw and not raw.endswith(b"\n"):
        raise RunDirError(f"{path}: truncated (the last row is cut off); rerun or resume the arm")
    try:
        text = raw.decode("utf-8")
        _check_rows(path, text)
        frame = pd.read_csv(
            io.StringIO(text),
            keep_default_na=False,
            na_values=_missing(text),
            dtype={"group": object},
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{path}: unreadable CSV ({exc})") from None
    older = OPTIONAL.get(table, {})
    frame = frame.assign(**{c: v for c, v in older.items() if c not in frame.columns})
    missing = [c for c in TABLES[table] if c not in frame.columns]
    if missing:
        raise RunDirError(
            f"{path}: missing column(s) {', '.join(missing)}; not a fstq-sim {table} table"
        )
    _check_numbers(path, table, frame)
    if "group" in frame.columns:
        frame["group"] = frame["group"].fillna("")
    return frame.assign(arm=arm.arm, seed=arm.seed, scenario=arm.scenario)


def _tables(runs: Runs, table: str) -> pd.DataFrame:
    return pd.concat([read_table(arm, table) for arm in find_arms(runs)], ignore_index=True)


def load_table(runs: Runs, table: str) -> pd.DataFrame:
    """One table (rounds, clients or evals) of every arm, with `arm`, `seed`, `scenario`;
    evals: the overall rows (the per-view rows: load_views)."""
    frame = _tables(runs, table)
    if table == "evals":
        frame = frame[frame["group"] == ""].reset_index(drop=True)
    return frame


def load_views(runs: Runs) -> pd.DataFrame:
    """The evals.csv rows of every view (`group` a group or label value, or clients:<stat>);
    empty when no arm evaluated any."""
    frame = _tables(runs, "evals")
    return frame[frame["group"] != ""].reset_index(drop=True)


CLIENT_EVAL_COLUMNS = ("round", "client", "metric", "value")


def load_client_evals(runs: Runs) -> pd.DataFrame:
    """Every arm's client_evals.csv (per-client evaluation), with `arm`, `seed`, `scenario`;
    empty when none evaluated its clients."""
    frames = []
    for arm in find_arms(runs):
        path = arm.folder / "client_evals.csv"
        if path.exists():
            try:
                frame = pd.read_csv(path)
            except (pd.errors.ParserError, UnicodeDecodeError) as exc:
                raise RunDirError(f"{path}: unreadable CSV ({exc})") from None
            frames.append(frame.assign(arm=arm.arm, seed=arm.seed, scenario=arm.scenario))
    columns = [*CLIENT_EVAL_COLUMNS, "arm", "seed", "scenario"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def complete_seeds(arms: list[Arm], names: list[str]) -> list[Arm]:
    """The arms of the seeds in which every named arm has finished, so that a table over arms
    compares the same seeds (a seed still running waits for a later summary)."""
    done: dict[int, list[Arm]] = {}
    for arm in arms:
        if arm.complete:
            done.setdefault(arm.seed, []).append(arm)
    kept = [
        a for seed in sorted(done) if {a.arm for a in done[seed]} >= set(names) for a in done[seed]
    ]
    if not kept:
        raise RunDirError("no seed has finished all of its arms yet; run or resume it first")
    return kept


def host_costs(arms: list[Arm]) -> dict[str, Any]:
    """From the arms' manifests: the sum over arm-runs of host end − start (minutes) and what
    the replay cache reused (client-rounds and evaluations looked up, found, host seconds
    the hits saved), so a report can say what a study cost."""
    seconds, looked, hits, saved = 0.0, 0, 0, 0.0
    for arm in arms:
        manifest = _read_json(arm.folder / "manifest.json")
        start, end = (datetime.fromisoformat(manifest[k]) for k in ("host_start", "host_end"))
        seconds += (end - start).total_seconds()
        cache = manifest.get("cache", {})
        looked += cache.get("hits", 0) + cache.get("misses", 0)
        hits += cache.get("hits", 0)
        saved += cache.get("saved_host_s", 0.0)
    return {
        "host_minutes": seconds / 60.0,
        "cache_looked": looked,
        "cache_hits": hits,
        "cache_saved_minutes": saved / 60.0,
    }


def parameter_count(arm: Arm) -> int | None:
    """Trainable parameters (real training only; None when the arm saved no state, e.g.
    surrogate runs): the manifest's `trainable_parameters`, written when a real arm finishes,
    else the `global` array of its latest state-r*.npz (arms that finished before the manifest
    recorded it; the states stay out of git, see results/.gitignore)."""
    recorded = _read_json(arm.folder / "manifest.json").get("trainable_parameters")
    if recorded is not None:
        return int(recorded)
    states = sorted(arm.folder.glob("state-r*.npz"), key=lambda p: int(p.stem[len("state-r") :]))
    if not states:
        return None
    try:
        with np.load(states[-1]) as data:
            return int(data["global"].size)
    except (OSError, ValueError, KeyError) as exc:
        raise RunDirError(f"{states[-1]}: unreadable state ({exc})") from None


def generations(arm: Arm) -> list[dict[str, Any]]:
    """The greedy answers an arm saved, one entry per generating round (round, samples of
    prompt, reference and answer), in round order; [] when it generated none. Older runs kept
    only the last round's ({"round", "samples"})."""
    path = arm.folder / "generations.json"
    if not path.exists():
        return []
    saved = _read_json(path)
    return saved.get("rounds", [saved])
