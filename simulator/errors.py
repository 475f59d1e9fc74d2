"""User-facing errors: each names the file, key or value at fault and how to fix it."""

from __future__ import annotations


class SimulatorError(Exception):
    """Base class for failures caused by user input; the CLI prints them without a traceback."""


class ScenarioError(SimulatorError):
    """A scenario file (or a --set override) is invalid."""


class TraceError(SimulatorError):
    """A bandwidth or availability trace file cannot be used."""


class RunDirError(SimulatorError):
    """A run directory is missing, damaged or from an incompatible version."""


def located(path: object, key: str | None, problem: str, fix: str | None = None) -> str:
    """Compose the standard `file: key: problem. fix` message."""
    where = f"{path}" if key is None else f"{path}: {key}"
    text = f"{where}: {problem}"
    return f"{text}. Fix: {fix}" if fix else text


class DataError(SimulatorError):
    """A data set file cannot be used (missing columns, bad encoding, unseen labels, ...)."""


class ModelError(SimulatorError):
    """A model cannot be loaded (unknown alias, missing folder, no hub access)."""


class StalledRunError(SimulatorError):
    """A run cannot make progress (nobody ever online, no update ever arrives)."""


class MessageError(SimulatorError):
    """An uplink or downlink message cannot be decoded (bad frame, CRC, length or shape)."""
