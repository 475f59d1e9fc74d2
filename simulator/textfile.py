"""Reading user text files (traces, data sets) with errors that say file, line and fix."""

from __future__ import annotations

from pathlib import Path

from simulator.errors import SimulatorError, located


def read_text(path: Path, error: type[SimulatorError], missing_fix: str) -> str:
    """The whole file as UTF-8 text (a BOM is dropped, CRLF kept for the caller to split).

    Missing files, directories, unreadable files and undecodable bytes raise `error`, the
    last naming the line and byte offset of the first bad byte.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise error(located(path, None, "no such file", missing_fix)) from None
    except IsADirectoryError:
        raise error(located(path, None, "is a directory", "name a file")) from None
    except OSError as exc:
        raise error(
            located(path, None, f"cannot be read ({exc.strerror})", "check its permissions")
        ) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise error(
            located(
                path,
                f"line {line}",
                f"byte 0x{data[exc.start]:02x} at byte offset {exc.start} is not valid UTF-8",
                "save the file as UTF-8 text (is it a binary file?)",
            )
        ) from None
