"""Every figure kind is written, as PNG and as SVG, and is not empty."""

from __future__ import annotations

import numpy as np
import pytest
from rundirs import hand_run, hand_sweep

from analysis import plots
from simulator.errors import RunDirError


@pytest.mark.parametrize("kind", sorted(plots.KINDS))
@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_each_kind_writes_a_figure(tmp_path, kind, suffix):
    sweep = hand_sweep(tmp_path)
    np.savez(sweep / "seed-1" / "dense" / "state-r2.npz", **{"global": np.zeros(100, np.float32)})
    out = plots.save(plots.KINDS[kind](sweep), tmp_path / f"{kind}{suffix}")
    data = out.read_bytes()
    assert len(data) > 5_000
    assert data.startswith(b"\x89PNG") if suffix == ".png" else b"<svg" in data[:2000]


def test_bits_without_state_is_a_clear_error(tmp_path):
    with pytest.raises(RunDirError, match=r"state-r\*\.npz"):
        plots.bits_figure(hand_run(tmp_path))


def test_seed_band_is_the_mean_of_the_seeds(tmp_path):
    fig = plots.quality_figure(hand_sweep(tmp_path), "time")
    line = fig.axes[0].lines[0]  # dense: accuracy + 0, 0.01, 0.02 over seeds -> mean + 0.01
    assert np.allclose(line.get_ydata(), [0.11, 0.51, 0.71])
    assert np.allclose(line.get_xdata(), [0.0, 10.0, 20.0])
