"""What every benchmark shares: where results go and what host produced them."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def host() -> dict[str, str]:
    """The machine a figure was measured on."""
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
    }


def save(name: str, result: dict[str, Any]) -> Path:
    """Write bench/results/<name>.json (with the host) and return its path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({**result, "host": host()}, indent=2) + "\n")
    return path


def print_table(rows: list[dict[str, Any]], columns: dict[str, str]) -> None:
    """Print rows as a right-aligned table: columns maps a row key to its header."""
    widths = {
        key: max(len(header), *(len(str(row[key])) for row in rows))
        for key, header in columns.items()
    }
    print(" ".join(f"{header:>{widths[key]}}" for key, header in columns.items()))
    for row in rows:
        print(" ".join(f"{row[key]!s:>{widths[key]}}" for key in columns))
