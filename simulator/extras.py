"""The optional parts of the install (pyproject extras): which modules each brings, so a
scenario that needs one is refused at validation with the command that installs it, instead of
failing on an import deep inside a run."""

from __future__ import annotations

import importlib.util

# extra -> the top-level modules a scenario's use of it imports
EXTRAS = {
    "train": ("torch", "transformers", "peft", "numba"),
    "ray": ("ray",),
}


def missing(extra: str) -> list[str]:
    """The modules of an extra that are not installed (located, never imported)."""
    return [name for name in EXTRAS[extra] if importlib.util.find_spec(name) is None]


def require(extra: str, what: str) -> None:
    """ValueError (shown as a scenario error) naming the extra when `what` needs a module of it
    that is not installed."""
    absent = missing(extra)
    if absent:
        raise ValueError(
            f"{what} needs {', '.join(absent)}, which this install lacks; install the "
            f"{extra} extra: pip install 'fstq-sim[{extra}]'"
        )


def hint(module: str) -> str:
    """For a module that failed to import: the extra that provides it, as a sentence to append
    ('' when no extra does)."""
    top = module.partition(".")[0]
    for extra, modules in EXTRAS.items():
        if top in modules:
            return f"; it comes with the {extra} extra: pip install 'fstq-sim[{extra}]'"
    return ""
