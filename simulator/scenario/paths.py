"""Path resolution: relative to the scenario file, trace_dir, or the shell's folder for --set."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

from simulator.errors import ScenarioError, located


def resolve_paths(raw: dict[str, Any], base: Path, source: str) -> None:
    """Make file paths absolute and check that they exist."""
    network = raw.get("network")
    if isinstance(network, dict):
        trace_base = base
        if network.get("trace_dir"):
            trace_base = (base / str(network["trace_dir"])).resolve()
            if not trace_base.is_dir():
                raise ScenarioError(
                    located(
                        source,
                        "network.trace_dir",
                        f"folder {trace_base} does not exist",
                        "give an existing folder",
                    )
                )
            network["trace_dir"] = str(trace_base)
        for direction in ("uplink", "downlink"):
            link = network.get(direction)
            if isinstance(link, dict) and link.get("kind") == "trace":
                link["files"] = _expand(
                    link.get("files"), trace_base, source, f"network.{direction}.files"
                )
    avail = raw.get("availability")
    if isinstance(avail, dict) and isinstance(avail.get("file"), str):
        avail["file"] = _expand([avail["file"]], base, source, "availability.file")[0]
    data = raw.get("training", {}).get("data") if isinstance(raw.get("training"), dict) else None
    many = isinstance(data, dict) and data.get("kind") == "squad"  # every file a glob matches
    for key in ("path", "eval_path"):
        value = data.get(key) if isinstance(data, dict) else None
        if isinstance(value, str) or (many and isinstance(value, list)):
            patterns = value if isinstance(value, list) else [value]
            found = _expand(patterns, base, source, f"training.data.{key}")
            data[key] = found if many else found[0]


def _expand(patterns: Any, base: Path, source: str, key: str) -> Any:
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        return patterns  # the schema reports the type error
    found: list[str] = []
    for pattern in patterns:
        path = base / pattern
        if any(c in pattern for c in "*?["):  # full glob semantics: `**`, wildcard folders
            hits = sorted(glob.glob(pattern, root_dir=base, recursive=True))
            matches = [m for m in (base / hit for hit in hits) if m.is_file()]
        else:
            matches = [path] if path.exists() else []
        if not matches:
            raise ScenarioError(
                located(
                    source,
                    key,
                    f"{pattern!r} matches no file under {base}",
                    "fix the path (relative paths start at the scenario's folder)"
                    + (", or set network.trace_dir" if key.startswith("network") else ""),
                )
            )
        found.extend(str(m.resolve()) for m in matches)
    return found


CWD_PATHS = (
    "network.trace_dir",
    "availability.file",
    "training.data.path",
    "training.data.eval_path",
)
