"""The traces and data shipped with the repository: every file listed in its SOURCES.md with the
right size and sha256, nothing unlisted, and byte-identical to the project's collection in
../shared when that folder sits beside the checkout."""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path

import pytest
from conftest import DATA, PROJECT_ROOT, SHARED, TRACES

# folder shipped -> where its originals live in the collection beside the project
SHIPPED = {
    TRACES: SHARED / "traces",
    DATA / "pubmedqa": SHARED / "datasets" / "pubmedqa",
    DATA / "xquad": SHARED / "datasets" / "xquad",
}
ROW = re.compile(r"^\| `(?P<file>[^`]+)` \| (?P<bytes>[\d,]+) \| `(?P<sha256>[0-9a-f]{64})` \|")
NOT_DATA = {"README.md", "SOURCES.md", "COPYING", "LICENSE"}


def listed(folder: Path) -> dict[str, tuple[int, str]]:
    """file -> (bytes, sha256) from the folder's SOURCES.md table."""
    rows = {}
    for line in (folder / "SOURCES.md").read_text(encoding="utf-8").splitlines():
        if match := ROW.match(line):
            rows[match["file"]] = (int(match["bytes"].replace(",", "")), match["sha256"])
    return rows


@pytest.mark.parametrize("folder", list(SHIPPED), ids=lambda p: p.name)
def test_every_shipped_file_matches_its_sources_row(folder: Path) -> None:
    rows = listed(folder)
    files = {
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.name not in NOT_DATA
    }
    assert files == set(rows)
    for name, (size, sha256) in rows.items():
        data = (folder / name).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (size, sha256), name


@pytest.mark.parametrize("folder", list(SHIPPED), ids=lambda p: p.name)
def test_every_data_folder_carries_its_licence(folder: Path) -> None:
    licences = set(re.findall(r"`([^`]*(?:LICENSE|COPYING))`", (folder / "SOURCES.md").read_text()))
    assert licences
    for name in licences:
        assert (folder / name).is_file(), name
    if folder == TRACES:
        assert "GNU GENERAL PUBLIC LICENSE" in (TRACES / "mahimahi" / "COPYING").read_text()


@pytest.mark.parametrize(("folder", "original"), list(SHIPPED.items()), ids=lambda p: p.name)
def test_shipped_copies_equal_the_collection(
    folder: Path, original: Path, shared_collection: Path
) -> None:
    for name in listed(folder):
        assert (folder / name).read_bytes() == (original / name).read_bytes(), name


def strings(value: object) -> list[str]:
    """Every string in a parsed TOML value."""
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return [value] if isinstance(value, str) else []


def test_no_shipped_scenario_reads_outside_the_repository() -> None:
    for path in (PROJECT_ROOT / "scenarios").glob("*.toml"):
        values = strings(tomllib.loads(path.read_text(encoding="utf-8")))
        assert not [v for v in values if "shared/" in v], path.name
