"""`--set key.path=value`: parsed as TOML and applied to the raw scenario."""

from __future__ import annotations

import tomllib
from typing import Any

from simulator.errors import ScenarioError


def parse_override(
    text: str, flag: str = "--set", example: str = "server.rounds=10"
) -> tuple[str, Any]:
    """`key.path=value` with value parsed as TOML (strings need no quotes)."""
    if "=" not in text:
        raise ScenarioError(f"{flag} {text!r}: expected key=value, e.g. {flag} {example}")
    key, value = text.split("=", 1)
    if not key.strip():
        raise ScenarioError(f"{flag} {text!r}: no key before '='; e.g. {flag} {example}")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return key.strip(), parsed


def apply_override(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set a dotted key in the raw scenario; `methods.NAME.key` addresses an arm by name."""
    parts = key.split(".")
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            node = _list_item(node, part, ".".join(parts[: i + 1]))
            continue
        node = node.setdefault(part, {})
        if not isinstance(node, dict | list):
            raise ScenarioError(f"--set {key}: {'.'.join(parts[: i + 1])} is not a table")
    if isinstance(node, list):
        raise ScenarioError(f"--set {key}: name a key inside the list item, e.g. methods.fedavg.x")
    node[parts[-1]] = value


def _list_item(items: list[Any], part: str, where: str) -> Any:
    if part.isdigit() and int(part) < len(items):
        return items[int(part)]
    for item in items:
        if isinstance(item, dict) and item.get("name") == part:
            return item
    names = [str(i.get("name")) for i in items if isinstance(i, dict)]
    raise ScenarioError(f"--set {where}: no item {part!r}; known: {', '.join(names)}")
