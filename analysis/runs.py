"""Load run directories into tidy pandas frames (reads only files, never simulator internals)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from simulator.errors import RunDirError


def arm_folders(run: str | Path) -> list[Path]:
    """The arm folders of a run directory (or the folder itself when it is one arm)."""
    run = Path(run)
    if (run / "evals.csv").exists():
        return [run]
    arms = sorted(p.parent for p in run.glob("*/evals.csv"))
    if not arms:
        raise RunDirError(
            f"{run}: no arm folders with evals.csv; is this a fstq-sim run directory?"
        )
    return arms


def load_table(run: str | Path, table: str) -> pd.DataFrame:
    """One table (rounds, clients or evals) of every arm, with an `arm` column."""
    frames = []
    for folder in arm_folders(run):
        path = folder / f"{table}.csv"
        try:
            frame = pd.read_csv(path)
        except FileNotFoundError:
            raise RunDirError(f"{path}: missing; the arm did not start or was damaged") from None
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise RunDirError(f"{path}: unreadable CSV ({exc})") from None
        frames.append(frame.assign(arm=folder.name))
    return pd.concat(frames, ignore_index=True)
