"""Trace readers and transfer arithmetic, checked against hand-computed values and real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simulator.errors import TraceError
from simulator.network.traces import Trace, format_stats, load_trace, trace_stats

# 8 Mbit/s on [0, 1), nothing on [1, 2), 16 Mbit/s on [2, 3); period 3 s (last + median step).
# In bytes: 1e6 B/s, 0, 2e6 B/s, so 3e6 bytes per period.
GAP_PENSIEVE = "0.0\t8\n1.0\t0\n2.0 16\n"
# Opportunities at 3, 5, 5 and 10 ms (leading silence, a repeated ms); period 10 ms.
MAHIMAHI = "3\n5\n5\n10\n"


def write(tmp_path: Path, content: str | bytes, name: str = "trace.txt") -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)
    return path


@pytest.fixture
def gap(tmp_path: Path) -> Trace:
    return load_trace(write(tmp_path, GAP_PENSIEVE), format="pensieve")


@pytest.fixture
def packets(tmp_path: Path) -> Trace:
    return load_trace(write(tmp_path, MAHIMAHI))


# --------------------------------------------------------------------------- rate mode


@pytest.mark.parametrize(
    ("nbytes", "start", "expected"),
    [
        (0, 0.5, 0.0),
        (0.5e6, 0.0, 0.5),
        (1.5e6, 0.5, 2.0),  # 0.5e6 by 1 s, stall to 2 s, 1e6 at 2e6 B/s
        (1e6, 1.2, 1.3),  # starts inside the gap
        (3e6, 2.5, 3.0),  # wraps: 1e6 to 3 s, 1e6 on [3, 4), stall, 1e6 on [5, 5.5)
        (1.5e6, 3000.5, 2.0),  # 1000 periods later, same as starting at 0.5
        (31e6, 0.0, 31.0),  # ten whole periods, then 1e6 on [30, 31)
    ],
)
def test_rate_transfer_times(gap: Trace, nbytes: float, start: float, expected: float) -> None:
    assert gap.transfer_time(nbytes, start) == pytest.approx(expected, abs=1e-9)


def test_rate_trace_summary(gap: Trace) -> None:
    assert gap.duration_s == 3.0
    assert gap.mean_bps == pytest.approx(8e6)
    assert gap.binned_bps(1.0) == pytest.approx([8e6, 0.0, 16e6])
    assert gap.binned_bps(2.0) == pytest.approx([4e6, 16e6])  # the short last bin is 1 s long


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [(0.5, 2.5, 1.5e6), (0.0, 30.0, 30e6), (1.2, 1.8, 0.0), (2.5, 5.5, 3e6), (1.0, 1.0, 0.0)],
)
def test_rate_delivered_bytes(gap: Trace, start: float, end: float, expected: float) -> None:
    assert gap.delivered_bytes(start, end) == pytest.approx(expected)


def test_rate_times_shift_to_zero_and_last_sample_holds_a_median_step(tmp_path: Path) -> None:
    trace = load_trace(write(tmp_path, "10 8\n11 8\n13 8\n"), format="pensieve")
    assert trace.duration_s == pytest.approx(4.5)  # span 3 s + median of steps (1, 2)
    assert trace.transfer_time(1e6, 0.0) == pytest.approx(1.0)


def test_scale_option_multiplies_capacity(tmp_path: Path) -> None:
    half = load_trace(write(tmp_path, GAP_PENSIEVE), format="pensieve", scale=0.5)
    assert half.mean_bps == pytest.approx(4e6)
    # 0.25e6 by 1 s, stall, 1e6 on [2, 3), the last 0.25e6 at 0.5e6 B/s from 3 s
    assert half.transfer_time(1.5e6, 0.5) == pytest.approx(3.0)


def test_scaled_copy_changes_capacity_only(gap: Trace) -> None:
    double = gap.scaled(2.0)
    # 1e6 by 1 s at 2e6 B/s, stall to 2 s, the other 0.5e6 at 4e6 B/s
    assert double.transfer_time(1.5e6, 0.5) == pytest.approx(1.5 + 0.5e6 / 4e6)
    assert double.mean_bps == pytest.approx(2 * gap.mean_bps)
    assert gap.transfer_time(1.5e6, 0.5) == pytest.approx(2.0)
    assert double.name == f"{gap.name} x2"


def test_from_rates_with_explicit_period() -> None:
    trace = Trace.from_rates([0.0, 1.0], [8e6, 0.0], period_s=4.0, name="pulse")
    assert trace.name == "pulse"
    assert trace.mean_bps == pytest.approx(2e6)
    assert trace.transfer_time(2e6, 0.0) == pytest.approx(5.0)  # 1e6 per 4 s period
    constant = Trace.from_rates([0.0], [1e6], period_s=10.0)
    assert constant.transfer_time(1e6, 123.4) == pytest.approx(8.0)


@pytest.mark.parametrize(
    ("times", "rates", "period", "fragment"),
    [
        ([0.0, 1.0], [1.0], None, "2 times and 1 rates"),
        ([0.0], [1.0], None, "one sample"),
        ([0.0, 1.0], [1.0, 1.0], 1.0, "period_s"),
        ([0.0, 1.0, 1.0], [1.0, 1.0, 1.0], None, "sample 2"),
        ([0.0, 1.0], [1.0, np.nan], None, "sample 1"),
        ([0.0, 1.0], [0.0, 0.0], None, "every rate is 0"),
    ],
)
def test_from_rates_rejects_bad_samples(
    times: list[float], rates: list[float], period: float | None, fragment: str
) -> None:
    with pytest.raises(TraceError, match="gen") as err:
        Trace.from_rates(times, rates, period_s=period, name="gen")
    assert fragment in str(err.value)


def test_stats_and_table(gap: Trace) -> None:
    stats = trace_stats(gap)
    assert stats["median_bps"] == pytest.approx(8e6)
    assert stats["p10_bps"] == pytest.approx(1.6e6)  # linear interpolation over (0, 8, 16)
    assert stats["p90_bps"] == pytest.approx(14.4e6)
    assert stats["zero_fraction"] == pytest.approx(1 / 3)
    text = format_stats(stats)
    assert "8.00 Mbps" in text
    assert "33.3 %" in text
    assert gap.name in text


def test_misuse_raises_value_error(gap: Trace) -> None:
    with pytest.raises(ValueError, match="-1"):
        gap.transfer_time(-1, 0.0)
    with pytest.raises(ValueError, match="before start"):
        gap.delivered_bytes(2.0, 1.0)


# --------------------------------------------------------------------------- packet mode


@pytest.mark.parametrize(
    ("nbytes", "start", "expected"),
    [
        (1, 0.0, 0.003),  # leading silence: nothing before 3 ms
        (1500, 0.0, 0.003),
        (1501, 0.0, 0.005),
        (4500, 0.0, 0.005),  # 3 ms, then both packets of 5 ms
        (6000, 0.0, 0.010),
        (3000, 0.005, 0.0),  # starts on a timestamp: that instant's packets count
        (4500, 0.005, 0.005),
        (7500, 0.006, 0.014),  # 10 ms, then loop 1: 13, 15, 15, 20 ms
        (3000, 0.010, 0.003),  # at the period: the opportunity at 10 ms, then 13 ms
        (1500, 0.0101, 0.0029),
        (401 * 1500, 0.0, 1.003),  # 100 whole loops of 4 packets, then 3 ms into loop 100
        (7500, 10.006, 0.014),  # loop 1000, same as starting at 6 ms
    ],
)
def test_mahimahi_transfer_times(
    packets: Trace, nbytes: float, start: float, expected: float
) -> None:
    assert packets.transfer_time(nbytes, start) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (0.005, 0.005, 3000),  # closed interval: both packets at 5 ms
        (0.0, 0.010, 6000),
        (0.0, 0.020, 12000),  # 10 ms (loop 0) and 10 + 10 ms (loop 1) both inside
        (0.006, 0.009, 0),
        (0.0031, 0.0049, 0),
    ],
)
def test_mahimahi_delivered_bytes(
    packets: Trace, start: float, end: float, expected: float
) -> None:
    assert packets.delivered_bytes(start, end) == expected


def test_mahimahi_first_timestamp_zero_shares_the_instant_with_the_period(tmp_path: Path) -> None:
    trace = load_trace(write(tmp_path, "0\n4\n"))
    assert trace.transfer_time(1500, 0.0) == 0.0
    assert trace.transfer_time(3000, 0.0) == pytest.approx(0.004)  # nothing before time 0
    assert trace.transfer_time(3000, 0.004) == 0.0  # loop 0's 4 ms and loop 1's 0 ms
    assert trace.transfer_time(4500, 0.004) == pytest.approx(0.004)


def test_mahimahi_options_and_summary(tmp_path: Path, packets: Trace) -> None:
    path = write(tmp_path, MAHIMAHI)
    assert packets.duration_s == 0.010
    assert packets.mean_bps == pytest.approx(4 * 1500 * 8 / 0.010)
    assert load_trace(path, packet_bytes=1000).transfer_time(3000, 0.0) == pytest.approx(0.005)
    doubled = load_trace(path, scale=2)
    assert doubled.transfer_time(3000, 0.0) == pytest.approx(0.003)
    assert doubled.mean_bps == pytest.approx(2 * packets.mean_bps)
    # 4 ms bins: {10 ms wrapped to 0, 3 ms}, {5, 5 ms}, and a 2 ms last bin with none
    assert packets.binned_bps(0.004) == pytest.approx([6e6, 6e6, 0.0])


def test_mahimahi_crlf_and_missing_final_newline_are_accepted(tmp_path: Path) -> None:
    trace = load_trace(write(tmp_path, b"3\r\n5\r\n5\r\n10"))
    assert trace.transfer_time(4500, 0.0) == pytest.approx(0.005)


# --------------------------------------------------------------------------- csv


@pytest.mark.parametrize(
    ("content", "options"),
    [
        (
            "time_ms,x,kbps\n0,a,8000\n1000,b,0\n2000,c,16000\n",
            {"time_col": "time_ms", "rate_col": "kbps", "time_unit": "ms", "rate_unit": "kbps"},
        ),
        ("t,r\n0,8\n1,0\n2,16\n", {"time_col": 0, "rate_col": 1, "rate_unit": "Mbps"}),
        ("0;0.008\n1;0\n2;0.016\n", {"delimiter": ";", "rate_unit": "Gbps"}),
        ("0,8e6\n1,0\n2,16e6\n", {"rate_unit": "bps"}),
    ],
)
def test_csv_columns_and_units(tmp_path: Path, content: str, options: dict) -> None:
    trace = load_trace(write(tmp_path, content, "t.csv"), format="csv", **options)
    assert trace.duration_s == 3.0
    assert trace.transfer_time(1.5e6, 0.5) == pytest.approx(2.0)


# NYU-METS style: a header, then `value,unit` rows of one second each, units varying by row.
METS = "Bandwidth,Unit\n5.91,Mbits\n800,Kbits\n0,bits\n2000000, bits/sec\n1.5,MBITS\n"


def test_a_unit_column_gives_each_row_its_unit(tmp_path: Path) -> None:
    path = write(tmp_path, METS, "mets.csv")
    for options in ({"rate_col": 0, "unit_col": 1}, {"rate_col": "Bandwidth", "unit_col": "Unit"}):
        trace = load_trace(path, format="csv", step_s=1.0, **options)
        assert trace.binned_bps(1.0).tolist() == [5.91e6, 0.8e6, 0.0, 2e6, 1.5e6]
    timed = write(tmp_path, "t,v,u\n0,2,Mbps\n2,500,kbps\n3,1,Gbits/s\n", "timed.csv")
    trace = load_trace(timed, format="csv", time_col="t", rate_col="v", unit_col="u")
    assert trace.binned_bps(1.0).tolist() == [2e6, 2e6, 0.5e6, 1e9, 1e9]  # holds 1.5 s


@pytest.mark.parametrize(
    ("content", "options", "expected"),
    [
        ("v,u\n1,Mbits\n2,MBytes\n3,furlongs\n", {}, ["line 3", "u 'MBytes' is not a rate unit"]),
        ("v,u\n1,Mbits\n2,\n", {}, ["line 3", "u '' is not a rate unit"]),
        ("v,u\n1,Mbits\n", {"rate_unit": "Mbps"}, ["rate_unit: given together with unit_col"]),
        ("v,u\n1,Mbits\n", {"unit_col": "unit"}, ["unit_col: no column 'unit'", "v, u"]),
    ],
)
def test_a_bad_unit_column_names_the_line_or_option(tmp_path, content, options, expected):
    path = write(tmp_path, content, "units.csv")
    with pytest.raises(TraceError) as caught:
        load_trace(path, format="csv", **{"rate_col": 0, "unit_col": 1, "step_s": 1.0, **options})
    assert str(caught.value).startswith(str(path))
    for part in expected:
        assert part in str(caught.value)


def test_a_kbps_lte_trace_read_as_mbps_is_flagged(tmp_path: Path) -> None:
    """A 1000x slip on a typical LTE trace (NYU-METS averages 6.2 Mbps) reads as 6.2 Gbps."""
    rows = "".join(f"{t},{kbps}\n" for t, kbps in enumerate([4200, 9100, 5300, 6200]))
    path = write(tmp_path, "time,kbps\n" + rows, "lte.csv")
    right = format_stats(trace_stats(load_trace(path, format="csv", rate_unit="kbps")))
    assert "mean       6.20 Mbps" in right and "warning" not in right
    slipped = format_stats(trace_stats(load_trace(path, format="csv", rate_unit="Mbps")))
    assert "mean       6.20 Gbps" in slipped
    assert "warning: a mean outside 1.00 kbps to 3.00 Gbps" in slipped
    assert "a kbps column read as Mbps is 1000x too fast" in slipped


def test_no_shipped_measurement_is_flagged_implausible(shared_collection: Path) -> None:
    """The plausible range holds every real trace of the collection traces/ is copied from,
    the fastest 5G runs included."""
    shared_traces = shared_collection / "traces"
    files = [(f, "pensieve", {}) for f in sorted((shared_traces / "pensieve-hsdpa").iterdir())]
    files += [(f, "pensieve", {}) for f in sorted((shared_traces / "fcc").iterdir())]
    files += [(f, "mahimahi", {}) for f in sorted((shared_traces / "mahimahi").rglob("*.*"))]
    data = shared_traces / "5g" / "5gophers-2020" / "01-Throughput" / "data.csv"
    fastest = {"carrier": "VERIZON", "num_tcp_conn": 8, "server_location": "US-East"}
    files += [(data, "5gophers", {**fastest, "run_num": run}) for run in range(101, 107)]
    means = []
    for path, fmt, options in files:
        if path.suffix == ".md" or path.name in ("LICENSE", "COPYING"):
            continue
        trace = load_trace(path, format=fmt, **options)
        text = format_stats(trace_stats(trace))
        assert "warning" not in text, text
        means.append(trace.mean_bps)
    assert len(means) > 150 and max(means) > 1.7e9  # Verizon mmWave, 8 connections


# --------------------------------------------------------------------------- bad input

BAD = [
    ("mahimahi", b"", {}, ["empty"]),
    ("mahimahi", b"\n\n", {}, ["empty"]),
    ("mahimahi", b"5\n\n7\n", {}, ["line 2", "blank"]),
    ("mahimahi", b"# mm trace\n5\n", {}, ["line 1", "comment"]),
    ("mahimahi", b"5\nabc\n", {}, ["line 2", "'abc'"]),
    ("mahimahi", b"5\n7.5\n", {}, ["line 2", "'7.5'"]),
    ("mahimahi", b"5\n-7\n", {}, ["line 2", "negative"]),
    ("mahimahi", b"5\n9\n7\n", {}, ["line 3", "before"]),
    ("mahimahi", b"0\n0\n", {}, ["line 2", "no period"]),
    ("mahimahi", b"5\n" + b"9" * 40 + b"\n", {}, ["line 2", "too large"]),
    ("mahimahi", bytes(range(256)), {}, ["line 2", "UTF-8"]),
    ("mahimahi", b"\x00\x01\x02\n5\n", {}, ["line 1", "not a whole number"]),
    ("mahimahi", b"5\n", {"packet_bytes": -1}, ["packet_bytes"]),
    ("mahimahi", b"5\n", {"rate_unit": "bps"}, ["rate_unit", "packet_bytes, scale"]),
    ("mahimahi", b"5\n", {"scale": 0}, ["scale"]),
    ("mahimahi", b"5\n", {"scale": "2"}, ["scale"]),
    ("pensieve", b"0 1 2\n", {}, ["line 1", "2 columns"]),
    ("pensieve", b"0 1\n5\n", {}, ["line 2", "found 1"]),
    ("pensieve", b"0 1\n1 nan\n", {}, ["line 2", "nan"]),
    ("pensieve", b"0 inf\n1 1\n", {}, ["line 1", "inf"]),
    ("pensieve", b"0 1\n1 -2\n", {}, ["line 2", "rate"]),
    ("pensieve", b"-1 1\n0 1\n", {}, ["line 1", "time"]),
    ("pensieve", b"0 1\n2 1\n1 1\n", {}, ["line 3", "strictly increase"]),
    ("pensieve", b"0 1\n0 1\n", {}, ["line 2", "strictly increase"]),
    ("pensieve", b"0 1\n1 fast\n", {}, ["line 2", "'fast'"]),
    ("pensieve", b"0 0\n1 0\n", {}, ["every rate is 0"]),
    ("pensieve", b"0 5\n", {}, ["one sample"]),
    ("pensieve", b"0 1\n# note\n", {}, ["line 2", "comment"]),
    ("pensieve", b"\xff\xfe\x00\x01", {}, ["line 1", "UTF-8"]),
    ("csv", b"t,r\n0,1\n1,2\n", {}, ["rate_unit", "missing"]),
    ("csv", b"t,r\n0,1\n1,2\n", {"rate_unit": "MBps"}, ["rate_unit", "Mbps"]),
    ("csv", b"t,r\n0,1\n1,2\n", {"rate_unit": "bps", "rate_col": "mbps"}, ["'mbps'", "t, r"]),
    ("csv", b"t,r\n0,1\n1,2\n", {"rate_unit": "bps", "rate_col": 5}, ["rate_col", "0 to 1"]),
    ("csv", b"t,r\n0,1\n1,2,3\n", {"rate_unit": "bps"}, ["line 3", "3 columns"]),
    ("csv", b"t,r\n0,1\n1,\n", {"rate_unit": "bps"}, ["line 3", "r '' is not a number"]),
    ("csv", b"t,r\n", {"rate_unit": "bps"}, ["no data rows"]),
    ("csv", b"0,1\n1,2\n", {"rate_unit": "bps", "delimiter": ";;"}, ["delimiter"]),
    ("csv", b"0,1\n1,2\n", {"rate_unit": "bps", "time_unit": "h"}, ["time_unit", "s, ms"]),
    ("5gophers", b"a,b\n1,2\n", {}, ["no 5Gophers schema"]),
    ("5gophers", b"seq_num,throughput_mbps\n", {}, ["no data rows"]),
    ("5gophers", b"seq_num,throughput_mbps\n1,5\n1,6\n", {}, ["line 3", "seq_num"]),
    ("5gophers", b"seq_num,throughput_mbps\n1,5\n", {"carrier": "x"}, ["carrier", "scale"]),
    ("sqlite", b"0 1\n", {}, ["format", "mahimahi, pensieve, csv, 5gophers"]),
]


@pytest.mark.parametrize(("fmt", "content", "options", "fragments"), BAD)
def test_bad_input_names_file_and_problem(
    tmp_path: Path, fmt: str, content: bytes, options: dict, fragments: list[str]
) -> None:
    path = write(tmp_path, content, "bad-trace.txt")
    with pytest.raises(TraceError) as err:
        load_trace(path, format=fmt, **options)
    message = str(err.value)
    assert "bad-trace.txt" in message
    for fragment in fragments:
        assert fragment in message


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="no-such.up: no such file"):
        load_trace(tmp_path / "no-such.up")
    with pytest.raises(TraceError, match="is a directory"):
        load_trace(tmp_path)


# --------------------------------------------------------------------------- consistency


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("mahimahi/ATT-LTE-driving.up", "mahimahi"), ("pensieve-hsdpa/norway_bus_1", "pensieve")],
)
def test_delivered_bytes_covers_transfer(shared_traces: Path, name: str, fmt: str) -> None:
    trace = load_trace(shared_traces / name, format=fmt)
    rng = np.random.default_rng(7)
    starts = rng.uniform(0, 3 * trace.duration_s, 500)
    sizes = rng.uniform(1, 3e6, 500)
    for start, size in zip(starts.tolist(), sizes.tolist(), strict=True):
        seconds = trace.transfer_time(size, start)
        delivered = trace.delivered_bytes(start, start + seconds)
        if fmt == "mahimahi":
            assert delivered >= size
        else:
            assert delivered == pytest.approx(size, rel=1e-9)
        assert trace.transfer_time(size + 3000, start) >= seconds


# --------------------------------------------------------------------------- real traces


@pytest.mark.parametrize(
    ("nbytes", "start", "expected"),
    [
        (1500, 0.0, 0.831),  # first lines: 831, 880, 880, 950, 1031
        (3000, 0.0, 0.880),
        (4500, 0.0, 0.880),
        (6000, 0.0, 0.950),
        (7500, 0.0, 1.031),
        (3000, 0.880, 0.0),
        (1500, 1012.473, 0.830),  # past the period (last line 1012472): loop 1's 831 ms
    ],
)
def test_att_lte_uplink_first_packets(
    shared_traces: Path, nbytes: float, start: float, expected: float
) -> None:
    trace = load_trace(shared_traces / "mahimahi/ATT-LTE-driving.up")
    assert trace.transfer_time(nbytes, start) == pytest.approx(expected, abs=1e-9)


# traces.md section 1 (Mbps, zero bins in %). Its bins include a 1-ms bin at the period, so
# percentiles are compared loosely; duration and mean are exact.
MAHIMAHI_TABLE = [
    ("ATT-LTE-driving.up", 1012.5, 0.83, 1.04, 0.01, 1.16, 9.3),
    ("TMobile-LTE-short.up", 140.0, 13.32, 11.24, 3.32, 25.32, 0.0),
    ("TMobile-UMTS-driving.up", 931.2, 0.94, 1.07, 0.30, 1.42, 2.9),
    ("Verizon-LTE-short.up", 140.0, 5.95, 5.65, 2.29, 10.60, 0.7),
    ("orange-4g-2022/orange-4G-traces-A-up.pps", 603.6, 2.44, 2.46, 1.90, 3.01, 0.0),
]


@pytest.mark.parametrize(
    ("name", "duration", "mean", "median", "p10", "p90", "zero"), MAHIMAHI_TABLE
)
def test_mahimahi_stats_match_reference_table(
    shared_traces: Path,
    name: str,
    duration: float,
    mean: float,
    median: float,
    p10: float,
    p90: float,
    zero: float,
) -> None:
    stats = trace_stats(load_trace(shared_traces / "mahimahi" / name))
    assert stats["duration_s"] == pytest.approx(duration, abs=0.05)
    assert stats["mean_bps"] / 1e6 == pytest.approx(mean, abs=0.006)
    for key, value in (("median_bps", median), ("p10_bps", p10), ("p90_bps", p90)):
        assert stats[key] / 1e6 == pytest.approx(value, rel=0.05, abs=0.01)
    assert 100 * stats["zero_fraction"] == pytest.approx(zero, abs=0.06)


def test_pensieve_norway_bus_first_rows(shared_traces: Path) -> None:
    trace = load_trace(shared_traces / "pensieve-hsdpa/norway_bus_1", format="pensieve")
    first_rate, second_rate, first_end = 4.03768755221e6 / 8, 4.79283060109e6 / 8, 0.549999952316
    assert trace.transfer_time(100_000, 0.0) == pytest.approx(100_000 / first_rate)
    spill = first_rate * first_end + 10_000
    assert trace.transfer_time(spill, 0.0) == pytest.approx(first_end + 10_000 / second_rate)


def test_fcc_outage_stalls_a_transfer(shared_traces: Path) -> None:
    trace = load_trace(shared_traces / "fcc/trace_942598_http---www.youtube.com", format="pensieve")
    assert trace.duration_s == 215.0  # rows every 5 s up to 210 s
    # 0.0 Mbps from 150 s to 175 s, then 0.2288 Mbps
    assert trace.transfer_time(1000, 150.0) == pytest.approx(25.0 + 1000 * 8 / 0.2288e6)
    assert trace.delivered_bytes(150.0, 175.0) == 0.0
    assert trace_stats(trace)["zero_fraction"] > 0.1


def test_5gophers_throughput_runs(shared_traces: Path) -> None:
    path = shared_traces / "5g/5gophers-2020/01-Throughput/data.csv"
    first = load_trace(path, format="5gophers")
    assert "carrier=SPRINT num_tcp_conn=1 server_location=US-East run_num=1" in first.name
    assert first.transfer_time(0.9312768299517644e6 / 8, 0.0) == pytest.approx(1.0)
    verizon = load_trace(path, format="5gophers", carrier="verizon", num_tcp_conn=1)
    assert "carrier=VERIZON num_tcp_conn=1 server_location=US-East" in verizon.name
    assert 50 <= verizon.duration_s <= 70
    with pytest.raises(TraceError, match="SPRINT, TMOBILE, VERIZON"):
        load_trace(path, format="5gophers", carrier="ATT")
    with pytest.raises(TraceError, match="data.csv: num_tcp_conn: .*1, 8"):
        load_trace(path, format="5gophers", num_tcp_conn=4)


def test_5gophers_walking_and_driving(shared_traces: Path) -> None:
    folder = shared_traces / "5g/5gophers-2020/03-User-Mobility"
    walking = load_trace(folder / "walking-trace.csv", format="5gophers")
    assert walking.duration_s == 603.0
    assert walking.transfer_time(92.1e6 / 8, 0.0) == pytest.approx(1.0)
    # traces.md: car-driving means, trace 1 / trace 2 (one second per row)
    for carrier, means in (("Sprint", (265, 316)), ("TMobile", (97, 30)), ("Verizon", (275, 191))):
        for number, mean in enumerate(means, 1):
            trace = load_trace(
                folder / f"car-driving-trace-{number}.csv", format="5gophers", carrier=carrier
            )
            assert trace.mean_bps / 1e6 == pytest.approx(mean, abs=0.6)
    default = load_trace(folder / "car-driving-trace-1.csv", format="5gophers")
    assert default.name.endswith("[carrier=Sprint]")
    assert default.duration_s == 120.0
    with pytest.raises(TraceError, match="run_num.*valid options: carrier, scale"):
        load_trace(folder / "car-driving-trace-1.csv", format="5gophers", run_num=1)


# --- issue 12: the Irish 5G production data set's shape, and rates too small to print ---

IRISH_HEADER = (
    "Timestamp,Longitude,Latitude,Speed,Operatorname,CellID,NetworkMode,DL_bitrate,UL_bitrate"
)


def _irish(tmp_path: Path, rows: list[tuple[str, int, int]]) -> Path:
    """A file in the Irish 5G data set's layout: one row a second, kbps, with a repeated
    timestamp and a gap, as 7-12 % and 10-17 % of its rows are."""
    lines = [f"{ts},-8.4,51.9,0,A,7,5G,{dl},{ul}" for ts, dl, ul in rows]
    return write(tmp_path, "\n".join([IRISH_HEADER, *lines]) + "\n", "B_2019.12.16_13.40.04.csv")


IRISH = [
    ("2019.12.16_13.40.04", 20000, 1000),
    ("2019.12.16_13.40.05", 30000, 2000),
    ("2019.12.16_13.40.05", 50000, 4000),  # repeated second
    ("2019.12.16_13.40.09", 10000, 500),  # 4 s gap
    ("2019.12.16_13.40.10", 0, 0),
]
IRISH_OPTIONS = {"time_col": "Timestamp", "rate_col": "DL_bitrate", "rate_unit": "kbps"}


def test_timestamps_need_a_time_format(tmp_path):
    path = _irish(tmp_path, IRISH)
    with pytest.raises(
        TraceError, match=r"line 2: Timestamp '2019.12.16_13.40.04' is not a number.*time_format"
    ):
        load_trace(path, format="csv", **IRISH_OPTIONS)
    with pytest.raises(TraceError, match=r"line 4: time 1 s repeats the previous line's.*repeated"):
        load_trace(path, format="csv", time_format="%Y.%m.%d_%H.%M.%S", **IRISH_OPTIONS)
    with pytest.raises(TraceError, match=r"line 2: Timestamp .* does not match time_format"):
        load_trace(path, format="csv", time_format="%Y-%m-%d", **IRISH_OPTIONS)


@pytest.mark.parametrize(("repeated", "second"), [("mean", 40e6), ("first", 30e6), ("last", 50e6)])
def test_repeated_timestamps_are_merged_by_policy(tmp_path, repeated, second):
    path = _irish(tmp_path, IRISH)
    trace = load_trace(
        path, format="csv", time_format="%Y.%m.%d_%H.%M.%S", repeated=repeated, **IRISH_OPTIONS
    )
    # samples at 0, 1, 5, 6 s (the gap holds the 1 s rate); period 6 + median step 1 = 7 s
    assert trace.duration_s == 7.0
    assert trace.binned_bps(1.0).tolist() == [20e6, second, second, second, second, 10e6, 0.0]


def test_rows_as_fixed_steps_close_the_gaps(tmp_path):
    path = _irish(tmp_path, IRISH)
    trace = load_trace(path, format="csv", rate_col="UL_bitrate", rate_unit="kbps", step_s=1.0)
    assert trace.duration_s == 5.0
    assert trace.binned_bps(1.0).tolist() == [1e6, 2e6, 4e6, 0.5e6, 0.0]
    with pytest.raises(TraceError, match="step_s: rows are fixed steps"):
        load_trace(path, format="csv", rate_unit="kbps", step_s=1.0, time_format="%Y")
    with pytest.raises(TraceError, match="repeated: unknown policy 'sum'"):
        load_trace(path, format="csv", rate_unit="kbps", repeated="sum")


def test_tiny_rates_print_in_their_own_unit_with_a_warning(tmp_path):
    path = write(tmp_path, "0 1e-6\n1 2e-6\n")  # Mbit/s: 1 and 2 bit/s
    text = format_stats(trace_stats(load_trace(path, format="pensieve")))
    assert "mean       1.50 bps" in text and "0.00 Mbps" not in text
    assert "warning: a mean outside 1.00 kbps to 3.00 Gbps is no real link's" in text
    normal = format_stats(trace_stats(load_trace(write(tmp_path, "0 4\n1 2\n", "b"), "pensieve")))
    assert "mean       3.00 Mbps" in normal and "warning" not in normal
