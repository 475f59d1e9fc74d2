"""Figures from run directories (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from analysis.runs import load_table

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")


def time_unit(longest_s: float) -> tuple[str, float]:
    """A readable unit for a time axis that runs to longest_s seconds."""
    if longest_s < 120:
        return "seconds", 1.0
    if longest_s < 2 * 3600:
        return "minutes", 60.0
    return "hours", 3600.0


def quality_vs_time(run: str | Path, out: str | Path, metric: str | None = None) -> Path:
    """Quality against simulated wall-clock, one line per arm; writes a PNG and returns it."""
    evals = load_table(run, "evals")
    metric = metric or str(evals["metric"].iloc[0])
    evals = evals[evals["metric"] == metric]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    unit, scale = time_unit(float(evals["time_s"].max()))
    for colour, (arm, frame) in zip(PALETTE * 4, evals.groupby("arm", sort=False), strict=False):
        times = frame["time_s"] / scale
        ax.step(times, frame["value"], where="post", label=arm, color=colour, lw=2)
    source = ", ".join(sorted(evals["source"].unique()))
    ax.set_xlabel(f"simulated wall-clock ({unit})")
    ax.set_ylabel(f"{metric} ({source})")
    ax.set_title(f"{Path(run).name}: {metric} vs simulated wall-clock")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
