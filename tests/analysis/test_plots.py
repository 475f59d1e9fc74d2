"""Every figure kind is written, and each figure's data is right: tick positions and labels,
legend order, shared axes, markers, reference lines and colours (not pixels)."""

from __future__ import annotations

import itertools
import json
import shutil

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from rundirs import add_metric, add_views, hand_run, hand_sweep, write_scenario

from analysis import plots
from simulator.errors import RunDirError, SimulatorError


@pytest.mark.parametrize("kind", sorted(plots.KINDS))
@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_each_kind_writes_a_figure(tmp_path, kind, suffix):
    sweep = hand_sweep(tmp_path)
    add_views(sweep)
    np.savez(sweep / "seed-1" / "dense" / "state-r2.npz", **{"global": np.zeros(100, np.float32)})
    out = plots.save(plots.KINDS[kind](sweep), tmp_path / f"{kind}{suffix}")
    data = out.read_bytes()
    assert len(data) > 5_000
    assert data.startswith(b"\x89PNG") if suffix == ".png" else b"<svg" in data[:2000]


def test_bits_without_state_is_a_clear_error(tmp_path):
    with pytest.raises(RunDirError, match=r"state-r\*\.npz"):
        plots.bits_figure(hand_run(tmp_path))


def test_seed_band_is_the_mean_of_the_seeds_with_a_marker_per_evaluation(tmp_path):
    fig = plots.quality_figure(hand_sweep(tmp_path), "time")
    line = fig.axes[0].lines[0]  # dense: accuracy + 0, 0.01, 0.02 over seeds -> mean + 0.01
    assert np.allclose(line.get_ydata(), [0.11, 0.51, 0.71])
    assert np.allclose(line.get_xdata(), [0.0, 10.0, 20.0])
    assert line.get_marker() == "o"  # the last evaluation reads as a point, not a spike


def _labelled_ticks(axis):
    """(position, label) of the major ticks inside the view, after a draw."""
    axis.figure.canvas.draw()
    low, high = sorted(axis.get_view_interval())
    ticks = [(t.get_loc(), t.label1.get_text()) for t in axis.get_major_ticks()]
    return [(loc, text) for loc, text in ticks if low <= loc <= high]


def _assert_plain_spaced_labels(axis):
    ticks = _labelled_ticks(axis)
    assert len(ticks) >= 2
    for _, text in ticks:
        assert text and "10^" not in text and "times" not in text and "×" not in text
        float(text)  # plain numbers
    assert all(not t.label1.get_text() for t in axis.get_minor_ticks())
    low, high = np.log10(sorted(axis.get_view_interval()))
    where = (np.log10([loc for loc, _ in ticks]) - low) / (high - low)  # axes fraction
    assert np.diff(where).min() >= 0.05  # no two labels run into each other


def test_log_byte_axis_has_plain_spaced_labels_and_none_on_minor_ticks(tmp_path):
    """Before: minor ticks were labelled '2×10⁻³', '3×10⁻³' ... side by side."""
    fig = plots.quality_figure(hand_sweep(tmp_path), "bytes")
    _assert_plain_spaced_labels(fig.axes[0].xaxis)


def test_pareto_loss_axis_under_a_decade_has_plain_spaced_labels(tmp_path):
    """Before: every minor tick of the log loss axis got a '%.2g' label ('0.30.40.5')."""
    run = hand_run(tmp_path)
    add_metric(run, "nll")  # values 1.1 .. 1.7, under a decade
    fig = plots.pareto_figure(run, "nll")
    _assert_plain_spaced_labels(fig.axes[0].yaxis)
    _assert_plain_spaced_labels(fig.axes[0].xaxis)


def test_round_axis_ticks_are_whole_rounds(tmp_path):
    run = hand_run(tmp_path)
    np.savez(run / "dense" / "state-r2.npz", **{"global": np.zeros(100, np.float32)})
    ticks = [loc for loc, _ in _labelled_ticks(plots.bits_figure(run).axes[0].xaxis)]
    assert ticks == [1.0, 2.0]


def _lab(colour):
    """CIELAB (D65) of an sRGB colour."""
    c = np.array(to_rgb(colour))
    c = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = m @ c / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_no_two_palette_colours_are_alike():
    """Before: blue / sky blue were 26 CIELAB units apart, orange / vermillion 33."""
    pairs = itertools.combinations(plots.PALETTE, 2)
    assert min(np.linalg.norm(_lab(a) - _lab(b)) for a, b in pairs) >= 35


def test_target_and_chance_lines_are_drawn(tmp_path):
    run = hand_run(tmp_path)
    write_scenario(run, ["dense", "small"], targets=(0.6, 0.8), classes=4)
    ax = plots.quality_figure(run, "time").axes[0]
    drawn = {
        line.get_label(): line.get_ydata()[0] for line in ax.lines if line.get_label()[0] != "_"
    }
    assert drawn["target 0.6"] == 0.6 and drawn["target 0.8"] == 0.8
    assert drawn["chance (1/4)"] == 0.25


def test_quality_draws_the_scenarios_metric_not_the_first_evaluated(tmp_path):
    """Before: `plot` drew perplexity (listed first in evals.csv) when the scenario said nll."""
    run = hand_run(tmp_path)
    add_metric(run, "perplexity", first=True)
    add_metric(run, "nll", first=False)
    write_scenario(run, ["dense", "small"], metric="nll")
    ax = plots.quality_figure(run, "time").axes[0]
    assert ax.get_ylabel().startswith("nll ")
    assert np.allclose(ax.lines[0].get_ydata(), [1.1, 1.5, 1.7])  # dense: accuracy + 1


def test_legends_follow_the_scenario_with_the_baseline_first(tmp_path):
    """Before: arms were in folder (alphabetical) order, whatever the baseline."""
    run = hand_run(tmp_path)
    write_scenario(run, ["small", "dense"])

    def legend(fig):
        return [t.get_text() for t in fig.axes[0].get_legend().get_texts()]

    assert legend(plots.quality_figure(run, "time"))[:2] == ["small", "dense"]
    assert legend(plots.round_cdf_figure(run)) == ["small", "dense"]
    assert legend(plots.quality_figure(run, "time", baseline="dense"))[:2] == ["dense", "small"]
    colours = plots.quality_figure(run, "time", baseline="dense").axes[0].lines
    assert colours[0].get_color() == plots.PALETTE[0]


def test_timeline_marks_dropped_clients_and_shares_its_time_axis(tmp_path):
    run = hand_run(tmp_path)
    fig = plots.timeline_figure(run)
    first, second = fig.axes[:2]
    assert first.get_shared_x_axes().joined(first, second)
    (dropped,) = [line for line in first.lines if line.get_label() == "dropped"]
    # client 2 drops at the start of rounds 1 and 2 (0 s and 10 s); rows sort by round, client
    assert dropped.get_xdata().tolist() == [0.0, 10.0]
    assert dropped.get_ydata().tolist() == [2, 5]
    labels = [t.get_text() for t in first.get_legend().get_texts()]
    assert sorted(labels) == ["compute", "download", "dropped", "upload"]


def test_a_many_arm_timeline_stays_a_readable_size(tmp_path):
    """Before: six arms of a few clients made a 960 x 5,400 px figure."""
    run = hand_run(tmp_path)
    for k in range(4):
        shutil.copytree(run / "dense", run / f"copy{k}")
        manifest = run / f"copy{k}" / "manifest.json"
        manifest.write_text(json.dumps(json.loads(manifest.read_text()) | {"arm": f"copy{k}"}))
    fig = plots.timeline_figure(run, rounds=[1, 2])
    assert len(fig.axes) == 6
    assert fig.get_size_inches()[1] <= plots.TIMELINE_MAX_HEIGHT


def test_output_paths_of_the_wrong_kind_are_clear_errors(tmp_path):
    run = hand_run(tmp_path)
    fig = plots.round_cdf_figure(run)
    with pytest.raises(SimulatorError, match=r"is a folder; name a file in it"):
        plots.save(fig, run)
    (tmp_path / "file").write_text("x")
    with pytest.raises(SimulatorError, match=r"file is a file, not a folder"):
        plots.save(fig, tmp_path / "file" / "cdf.png")
    with pytest.raises(SimulatorError, match=r"name a .png or .svg file"):
        plots.save(fig, tmp_path / "cdf.pdf")
