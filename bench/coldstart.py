"""Cold start of a fresh process that encodes with Fed-FSTQ: numba's compilation against its
on-disk cache.

Each run is a new interpreter that imports the codecs and encodes + decodes one ordinary update
(serial kernels) and one large one (parallel kernels, a million coordinates and more). Paired
runs alternate a source tree from before the parallel kernels were cached (`--before`, a git
revision) with this one, each against a cache folder it has already filled; a third row is this
tree against an empty cache (the first process after an install). Medians over the pairs. With
`--venv NAME=PATH` it also records the disk use of virtual environments (as `du` counts it),
e.g. the core install against the full one. Not a test: it prints a table and writes
bench/results/coldstart.json.

    .venv/bin/python bench/coldstart.py --before <revision> [--pairs 3] [--venv light=PATH ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

from common import print_table, save

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"serial": 200_000, "parallel": 4_000_000}  # coordinates; groups of 100,000
CHILD = """
import json, sys, time
start = time.perf_counter()
import numpy as np
from simulator.methods import registry
from simulator.methods.base import CodecContext, Group
times = {"import_s": time.perf_counter() - start}
rng = np.random.default_rng(0)
for name, size in json.loads(sys.argv[1]).items():
    begin = time.perf_counter()
    groups = tuple(Group(f"g{i}", i * 100_000, (100_000,)) for i in range(size // 100_000))
    update = rng.normal(0, 0.01, size).astype(np.float32)
    fisher = rng.lognormal(0, 1, size).astype(np.float32)
    codec = registry.codec("fstq", {})
    context = CodecContext(groups, seed=1, fisher=fisher)
    codec.decode(codec.encode(update, context), context)
    times[name + "_s"] = time.perf_counter() - begin
times["total_s"] = time.perf_counter() - start
print(json.dumps(times))
"""


def checkout(revision: str, into: Path) -> Path:
    """The simulator package of a git revision, extracted into a folder."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "simulator"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def process(source: Path, cache: Path) -> dict[str, float]:
    """One fresh interpreter's timings, with the package from `source` and numba's cache in
    `cache`."""
    env = dict(os.environ, PYTHONPATH=str(source), NUMBA_CACHE_DIR=str(cache))
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(SIZES)],
        cwd=source,  # `-c` puts the current folder first on sys.path
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout)


def disk_mb(folder: Path) -> float:
    """Disk use of a folder in MB (allocated blocks, as `du -s` counts them; links once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for path in folder.rglob("*"):
        stat = path.lstat()
        if (stat.st_dev, stat.st_ino) not in seen:
            seen.add((stat.st_dev, stat.st_ino))
            total += stat.st_blocks * 512
    return round(total / 1e6, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="git revision before the change")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--venv", action="append", default=[], help="NAME=PATH to measure")
    args = parser.parse_args()
    venvs = dict(item.split("=", 1) for item in args.venv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sources = {"before": checkout(args.before, work / "before"), "after": ROOT}
        caches = {name: work / f"cache-{name}" for name in sources}
        for name, source in sources.items():  # fill each cache once
            process(source, caches[name])
        runs: dict[str, list[dict[str, float]]] = {"before": [], "after": [], "empty cache": []}
        for pair in range(args.pairs):
            order = ("before", "after") if pair % 2 == 0 else ("after", "before")
            for name in order:
                runs[name].append(process(sources[name], caches[name]))
            runs["empty cache"].append(process(ROOT, work / f"cache-empty-{pair}"))
    rows = [
        {"run": name, **{k: round(statistics.median(r[k] for r in rs), 2) for k in rs[0]}}
        for name, rs in runs.items()
    ]
    print_table(rows, {key: key for key in rows[0]})
    sizes = {name: {"path": path, "mb": disk_mb(Path(path))} for name, path in venvs.items()}
    for name, size in sizes.items():
        print(f"venv {name}: {size['mb']:,.0f} MB ({size['path']})")
    options = "".join(f" --venv {name}={path}" for name, path in venvs.items())
    save(
        "coldstart",
        {
            "benchmark": "coldstart",
            "command": f"python bench/coldstart.py --before {args.before} --pairs {args.pairs}"
            + options,
            "before": args.before,
            "coordinates": SIZES,
            "pairs": args.pairs,
            "median": rows,
            "venvs": sizes,
        },
    )


if __name__ == "__main__":
    main()
