"""Link capacity traces: one looping capacity-over-time type, readers for the measured formats.

The engine asks a link two questions only: when does a transfer of n bytes that starts at t
finish (`Trace.transfer_time`), and how many bytes got through between a and b
(`Trace.delivered_bytes`, for transfers cut short). Both integrate the capacity curve exactly
with prefix sums and one binary search, so a call costs O(log n) however long the transfer.

Semantics (every format ends up in one of two modes):

* Rate mode (`pensieve`, `csv`, `5gophers`, `Trace.from_rates`). Sample (t_i, r_i) holds the rate
  r_i (bit/s) on [t_i, t_{i+1}). Times are shifted so that the first sample is at 0. The last
  sample holds for the median step, so the period is last time + median step, unless an explicit
  period is given. Delivered bytes grow linearly inside a sample and stay flat in a zero-rate
  sample: a transfer stalls there. A transfer finishes at the earliest instant its bytes are in.
  5gophers rows are ordered by seq_num and hold one second each; a gap in seq_num is closed up,
  not held, so the trace's mean is the mean of its rows.
* Packet mode (`mahimahi`, as mm-link replays it). Each line is a millisecond timestamp, and each
  line is one opportunity to deliver `packet_bytes` bytes. A repeated timestamp means several
  packets in that millisecond. The first timestamp need not be 0 (leading silence is real). The
  period is the last timestamp, and loop k (k = 0, 1, ...) has its opportunities at
  ts_j + k * period. Loop k's last opportunity and loop k + 1's opportunity at 0 share an instant
  and both count. Nothing exists before time 0. A transfer of n bytes started at s completes at
  the time of the ceil(n / packet_bytes)-th opportunity at or after s, counted across loops. It
  takes 0 s when the opportunities at s itself suffice. `delivered_bytes(s, e)` counts the
  opportunities at times t with s <= t <= e (closed at both ends), times packet_bytes. So
  delivered_bytes(s, s + transfer_time(n, s)) >= n. Because times are floats, an opportunity
  within 1 µs of s or e counts as at it.
* Both modes loop forever with their period. `mean_bps` is the capacity averaged over one period.
  Scaling multiplies capacity: rate mode multiplies every rate, and packet mode multiplies the
  bytes per opportunity (the timestamps stay).

Trace files are read where they lie; nothing is copied into the run directory.
"""

from __future__ import annotations

import csv
import math
import os
import re
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from math import ceil
from numbers import Real
from pathlib import Path
from typing import Any, NoReturn, Protocol

import numpy as np
import numpy.typing as npt

from simulator.errors import TraceError, located
from simulator.registry import Registry
from simulator.textfile import read_text

__all__ = [
    "READERS",
    "Trace",
    "TraceReader",
    "format_rate",
    "format_stats",
    "load_trace",
    "trace_stats",
]

_TIE_S = 1e-6  # packet mode: opportunities this close to a start or end time count as at it
_MAX_MS_DIGITS = 15  # mahimahi timestamps beyond ~30,000 years are typos, not traces
_TIME_UNITS = {"s": 1.0, "ms": 1e-3}
_RATE_UNITS = {"bps": 1.0, "kbps": 1e3, "Mbps": 1e6, "Gbps": 1e9}
# A unit column's cells (NYU-METS and iperf write Mbits, Kbits/sec, ...), compared ignoring case.
_ROW_UNITS = {
    f"{prefix}{unit}": factor
    for prefix, factor in (("", 1.0), ("k", 1e3), ("m", 1e6), ("g", 1e9))
    for unit in ("bps", "bit/s", "bits", "bits/s", "bits/sec")
}
_5G_RUN_KEYS = ("carrier", "num_tcp_conn", "server_location", "run_num")
_5G_WIDE_SUFFIX = "_throughput_mbps"
_MAHIMAHI_TEXT = re.compile(rf"[0-9]{{1,{_MAX_MS_DIGITS}}}(?:\n[0-9]{{1,{_MAX_MS_DIGITS}}})*\n?")


def _doubles(values: npt.ArrayLike) -> array:
    """A compact float64 sequence: bisect on it beats lists and numpy for scalar look-ups."""
    return array("d", np.ascontiguousarray(values, dtype=np.float64).tobytes())


class _RateCurve:
    """Piecewise-constant rate; bytes delivered are piecewise linear and inverted by bisection."""

    __slots__ = (
        "_cum",
        "_pos_cum",
        "_pos_end",
        "_pos_last",
        "_pos_rate",
        "_pos_t",
        "_rate",
        "_t",
        "period",
        "units_per_period",
    )

    def __init__(self, times: np.ndarray, rates: np.ndarray, period: float) -> None:
        """times start at 0 and strictly increase below period; rates are bytes/s, not all 0."""
        cum = np.concatenate(([0.0], np.cumsum(rates * np.diff(times, append=period))))
        positive = rates > 0
        self.period = float(period)
        self.units_per_period = float(cum[-1])
        self._t, self._cum, self._rate = _doubles(times), _doubles(cum[:-1]), _doubles(rates)
        # Only positive-rate samples can contain a finishing instant; inverting over them alone
        # never divides by zero, and a target on a flat stretch lands on the next rise.
        self._pos_t = _doubles(times[positive])
        self._pos_cum = _doubles(cum[:-1][positive])
        self._pos_end = _doubles(cum[1:][positive])
        self._pos_rate = _doubles(rates[positive])
        self._pos_last = int(positive.sum()) - 1

    def _done(self, u: float) -> float:
        """Bytes delivered in [0, u) for u within one period."""
        j = bisect_right(self._t, u) - 1
        return self._cum[j] + self._rate[j] * (u - self._t[j])

    def finish(self, units: float, start: float) -> float:
        """Seconds from start until units more bytes are in."""
        u = start % self.period
        target = self._done(u) + units
        loops = ceil(target / self.units_per_period) - 1
        rest = target - loops * self.units_per_period  # in (0, units_per_period]
        k = bisect_left(self._pos_end, rest, 0, self._pos_last)
        into = (rest - self._pos_cum[k]) / self._pos_rate[k]
        return loops * self.period + self._pos_t[k] + into - u

    def amount(self, start: float, end: float) -> float:
        """Bytes delivered in [start, end)."""
        return self._through(end) - self._through(start)

    def _through(self, x: float) -> float:
        loops, u = divmod(x, self.period)
        return loops * self.units_per_period + self._done(u)

    def cumulative(self, x: np.ndarray) -> np.ndarray:
        """Bytes delivered in [0, x) for each x in [0, period] (vectorised, for statistics)."""
        t, cum, rate = (np.frombuffer(a) for a in (self._t, self._cum, self._rate))
        j = np.searchsorted(t, x, side="right") - 1
        return cum[j] + rate[j] * (x - t[j])


class _PacketCurve:
    """Mahimahi delivery opportunities; the unit is one opportunity."""

    __slots__ = ("_n", "_ts", "period", "units_per_period")

    def __init__(self, ts: np.ndarray, period: float) -> None:
        """ts are non-decreasing seconds, the last one equal to period > 0."""
        self._ts = _doubles(ts)
        self._n = len(self._ts)
        self.period = float(period)
        self.units_per_period = float(self._n)

    def _before(self, x: float) -> int:
        """Opportunities strictly before time x, over loops 0, 1, ...; none before time 0."""
        if x <= 0.0:
            return 0
        loops = ceil(x / self.period) - 1  # x in (loops * period, (loops + 1) * period]
        return loops * self._n + bisect_left(self._ts, x - loops * self.period)

    def finish(self, units: float, start: float) -> float:
        """Seconds from start to the ceil(units)-th opportunity at or after start."""
        loops, j = divmod(self._before(start - _TIE_S) + ceil(units) - 1, self._n)
        return loops * self.period + self._ts[j] - start

    def amount(self, start: float, end: float) -> float:
        """Opportunities at times in [start, end], closed at both ends."""
        return float(self._before(end + _TIE_S) - self._before(start - _TIE_S))

    def cumulative(self, x: np.ndarray) -> np.ndarray:
        """Opportunities in [0, x) for each x in [0, period]; one at the period sits at 0."""
        ts = np.frombuffer(self._ts)
        at_period = self._n - int(np.searchsorted(ts, self.period))
        positions = np.concatenate((np.zeros(at_period), ts[: self._n - at_period]))
        return np.searchsorted(positions, x, side="left").astype(np.float64)


class Trace:
    """A link's capacity over time, looping with its period; build with load_trace or from_rates.

    A scaled copy shares the sample arrays, so a per-client trace costs a few bytes.
    """

    __slots__ = ("_bytes_per_unit", "_curve", "name")

    def __init__(self, curve: _RateCurve | _PacketCurve, bytes_per_unit: float, name: str) -> None:
        self._curve = curve
        self._bytes_per_unit = bytes_per_unit
        self.name = name

    @classmethod
    def from_rates(
        cls,
        times_s: npt.ArrayLike,
        rates_bps: npt.ArrayLike,
        period_s: float | None = None,
        name: str = "generated",
    ) -> Trace:
        """A rate-mode trace: rate r_i (bit/s) holds on [t_i, t_{i+1}); the last sample holds
        until period_s (default: last time + median step). Bad samples raise TraceError."""
        return cls(_rate_curve(name, times_s, rates_bps, None, period_s), 1.0, name)

    @property
    def duration_s(self) -> float:
        """The period after which the trace repeats."""
        return self._curve.period

    @property
    def mean_bps(self) -> float:
        """Capacity averaged over one period."""
        curve = self._curve
        return curve.units_per_period * self._bytes_per_unit * 8.0 / curve.period

    def transfer_time(self, nbytes: float, start_s: float) -> float:
        """Seconds from start_s until nbytes are delivered (0.0 for nothing to send)."""
        if not nbytes > 0:
            if nbytes == 0:
                return 0.0
            raise ValueError(f"{self.name}: cannot transfer {nbytes!r} bytes")
        seconds = self._curve.finish(nbytes / self._bytes_per_unit, start_s)
        return seconds if seconds > 0.0 else 0.0  # float rounding near an exact start instant

    def delivered_bytes(self, start_s: float, end_s: float) -> float:
        """Bytes the link can deliver from start_s to end_s (see the module notes on ends)."""
        if end_s < start_s:
            raise ValueError(f"{self.name}: end {end_s!r} s is before start {start_s!r} s")
        return self._curve.amount(start_s, end_s) * self._bytes_per_unit

    def scaled(self, factor: float) -> Trace:
        """The same trace with capacity multiplied by factor; the arrays are shared."""
        value = _positive(self.name, "scale", factor)
        return Trace(self._curve, self._bytes_per_unit * value, f"{self.name} x{value:g}")

    def binned_bps(self, bin_s: float = 1.0) -> np.ndarray:
        """Average capacity in bit/s per bin over one period; a shorter last bin is averaged
        over its own length."""
        width = _positive(self.name, "bin_s", bin_s)
        period = self.duration_s
        count = max(1, ceil(period / width - 1e-9))  # 140.0 s in 1 s bins is 140 bins, not 141
        edges = np.minimum(np.arange(count + 1) * width, period)
        edges[-1] = period
        units = np.diff(self._curve.cumulative(edges))
        return units * (8.0 * self._bytes_per_unit) / np.diff(edges)

    def __repr__(self) -> str:
        mode = "packet" if isinstance(self._curve, _PacketCurve) else "rate"
        return (
            f"Trace({self.name!r}, {mode} mode, period {self.duration_s:g} s, "
            f"mean {self.mean_bps / 1e6:.3f} Mbps)"
        )


# --------------------------------------------------------------------------- statistics


def trace_stats(trace: Trace, bin_s: float = 1.0) -> dict[str, Any]:
    """Summary over bins of bin_s seconds (percentiles by numpy's linear interpolation); the
    mean is the exact capacity average over one period."""
    bins = trace.binned_bps(bin_s)
    p10, median, p90 = np.percentile(bins, [10, 50, 90])
    return {
        "name": trace.name,
        "duration_s": trace.duration_s,
        "bin_s": float(bin_s),
        "mean_bps": trace.mean_bps,
        "median_bps": float(median),
        "p10_bps": float(p10),
        "p90_bps": float(p90),
        "max_bps": float(bins.max()),
        "zero_fraction": float(np.mean(bins == 0)),
    }


_RATE_STEPS = ((1e9, "Gbps"), (1e6, "Mbps"), (1e3, "kbps"))
# No real edge device's link averages below 1 kbps or above 3 Gbps: the fastest measured traces
# here (5Gophers, 8 TCP connections on Verizon mmWave) average 1.71 Gbps per run. So a kbps
# column read as Mbps (1000x too fast) is caught on every trace that averages above 3 Mbps:
# typical LTE (NYU-METS 6.2, Mahimahi LTE downlinks 4.6-16.7).
PLAUSIBLE_BPS = (1e3, 3e9)


def format_rate(bps: float) -> str:
    """A rate in the largest unit it reaches, so 0.2 bit/s reads as such, not as 0.00 Mbps."""
    for factor, unit in _RATE_STEPS:
        if bps >= factor:
            return f"{bps / factor:.2f} {unit}"
    return f"{bps:.2f} bps" if bps == 0 or bps >= 0.01 else f"{bps:.3g} bps"


def format_stats(stats: Mapping[str, Any]) -> str:
    """A small table for `fstq-sim traces stats`, with a warning when the mean is not a real
    link's (e.g. a CSV trace read with the wrong rate_unit)."""
    rows = [
        ("duration", f"{stats['duration_s']:.1f} s"),
        ("mean", format_rate(stats["mean_bps"])),
        ("median", format_rate(stats["median_bps"])),
        ("p10 / p90", f"{format_rate(stats['p10_bps'])} / {format_rate(stats['p90_bps'])}"),
        ("max", format_rate(stats["max_bps"])),
        ("zero bins", f"{100 * stats['zero_fraction']:.1f} % of {stats['bin_s']:g} s bins"),
    ]
    width = max(len(label) for label, _ in rows)
    lines = [str(stats["name"])] + [f"  {label:<{width}}  {text}" for label, text in rows]
    low, high = PLAUSIBLE_BPS
    if not low <= stats["mean_bps"] <= high:
        lines.append(
            f"  warning: a mean outside {format_rate(low)} to {format_rate(high)} is no real "
            "link's; check the reader's units (rate_unit, time_unit) and scale: a kbps column "
            "read as Mbps is 1000x too fast"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- loading


def load_trace(path: str | os.PathLike[str], format: str = "mahimahi", **options: Any) -> Trace:
    """Read a trace file in a format of READERS; options: the reader's, and scale (a factor).

    Every problem raises TraceError naming the file, the line or option, and the fix.
    """
    where = Path(path)
    try:
        reader = READERS.resolve(format)
    except ValueError as exc:
        raise TraceError(located(where, "format", str(exc))) from None
    _check_options(where, format, options, reader.options)
    scale = _positive(where, "scale", options.pop("scale", 1.0))
    trace = reader.read(where, _read_text(where), **options)
    return trace if scale == 1.0 else trace.scaled(scale)


def _read_mahimahi(path: Path, text: str, packet_bytes: float = 1500) -> Trace:
    """One integer millisecond timestamp per line, each a packet delivery opportunity."""
    size = _positive(path, "packet_bytes", packet_bytes)
    if not _MAHIMAHI_TEXT.fullmatch(text):
        _raise_bad_timestamp_line(path, text)
    ms = np.array(text.split(), dtype=np.int64)
    drops = np.flatnonzero(np.diff(ms) < 0)
    if drops.size:
        i = int(drops[0]) + 1
        raise TraceError(
            located(
                path,
                f"line {i + 1}",
                f"timestamp {ms[i]} ms is before the previous line's {ms[i - 1]} ms",
                "timestamps must not decrease",
            )
        )
    if ms[-1] == 0:
        raise TraceError(
            located(
                path,
                f"line {ms.size}",
                "the last timestamp is 0 ms, so the trace has no period",
                "the last timestamp sets the loop period and must be > 0",
            )
        )
    seconds = ms / 1000.0
    return Trace(_PacketCurve(seconds, seconds[-1]), size, path.name)


def _raise_bad_timestamp_line(path: Path, text: str) -> NoReturn:
    """Slow path, only once the whole-file check failed: name the first bad line."""
    for number, line in enumerate(_lines(path, text), 1):
        if line.isascii() and line.isdigit() and len(line) <= _MAX_MS_DIGITS:
            continue
        if line.startswith("-") and line[1:].isdigit():
            problem = f"negative timestamp {_show(line)}"
        elif line.isascii() and line.isdigit():
            problem = f"timestamp {_show(line)} is too large"
        else:
            problem = f"{_show(line)} is not a whole number of milliseconds"
        raise TraceError(
            located(
                path,
                f"line {number}",
                problem,
                "a mahimahi trace has one non-negative integer (ms) per line and nothing else",
            )
        )
    raise AssertionError("the fast check rejected a file the slow check accepts")


def _read_pensieve(path: Path, text: str) -> Trace:
    """`time_s throughput_Mbps` per line, tab or space separated, no header."""
    rows = [line.split() for line in _lines(path, text)]
    for number, row in enumerate(rows, 1):
        if len(row) != 2:
            raise TraceError(
                located(
                    path,
                    f"line {number}",
                    f"expected 2 columns (time_s throughput_Mbps), found {len(row)}",
                    "each line must be a time in seconds and a throughput in Mbit/s",
                )
            )
    numbers = range(1, len(rows) + 1)
    times = _floats(path, [row[0] for row in rows], numbers, "time_s")
    mbps = _floats(path, [row[1] for row in rows], numbers, "throughput_Mbps")
    return Trace(_rate_curve(path, times, mbps * 1e6, numbers), 1.0, path.name)


def _read_csv(
    path: Path,
    text: str,
    time_col: int | str = 0,
    rate_col: int | str = 1,
    time_unit: str = "s",
    rate_unit: str | None = None,
    delimiter: str = ",",
    time_format: str | None = None,
    repeated: str = "error",
    step_s: float | None = None,
    unit_col: int | str | None = None,
) -> Trace:
    """A time column and a rate column, by header name or 0-based index, in the units given.

    unit_col: a column giving each row's rate unit (NYU-METS style `value,unit` rows in Mbits,
    Kbits or bits; bps, kbps, Mbps, Gbps and iperf's Mbits/sec are read too), instead of one
    rate_unit for the file. time_format: parse the time column as timestamps (strptime codes,
    e.g. the Irish 5G data set's '%Y.%m.%d_%H.%M.%S'). repeated: what rows sharing one time
    become ('error', or one row of their 'mean', 'first' or 'last' rate). step_s: ignore the
    time column and let each row hold step_s seconds in file order (gaps closed up, as the
    5gophers reader does)."""
    if (rate_unit is None) == (unit_col is None):
        raise TraceError(
            located(
                path,
                "rate_unit",
                "missing" if rate_unit is None else "given together with unit_col",
                f"name the file's unit (one of {_names(_RATE_UNITS)}), or the column that "
                "gives each row's unit as unit_col, not both",
            )
        )
    rate_factor = 1.0 if rate_unit is None else _unit(path, "rate_unit", rate_unit, _RATE_UNITS)
    time_factor = _unit(path, "time_unit", time_unit, _TIME_UNITS)
    _check_time_options(path, time_unit, time_format, repeated, step_s)
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise TraceError(
            located(path, "delimiter", f"{delimiter!r} is not one character", "e.g. ',' or ';'")
        )
    rows, numbers = _csv_rows(path, text, delimiter)
    columns = [("rate_col", rate_col), ("time_col", time_col)][: 1 if step_s is not None else 2]
    if unit_col is not None:
        columns.append(("unit_col", unit_col))
    by_name = any(isinstance(col, str) for _, col in columns)
    header = rows[0] if by_name else None
    picked = [_column_index(path, option, col, header, len(rows[0])) for option, col in columns]
    if header is None and not _is_number(rows[0][picked[0]]):
        header = rows[0]  # an index was given, but the first row is a header all the same
    if header is not None:
        rows, numbers = rows[1:], numbers[1:]
        if not rows:
            raise TraceError(located(path, None, "a header but no data rows", "add samples"))

    def cells(i: int) -> list[str]:
        return [row[i] for row in rows]

    def name(i: int) -> str:
        return header[i] if header else f"column {i}"

    rates = _floats(path, cells(picked[0]), numbers, name(picked[0])) * rate_factor
    if unit_col is not None:
        rates *= _row_units(path, cells(picked[-1]), numbers, name(picked[-1]))
    if step_s is not None:
        times = np.arange(len(rows), dtype=np.float64) * float(step_s)
    elif time_format is not None:
        times = _timestamps(path, cells(picked[1]), numbers, name(picked[1]), time_format)
    else:
        fix = "write a number such as 1.5, or give time_format for timestamps"
        times = _floats(path, cells(picked[1]), numbers, name(picked[1]), fix) * time_factor
    if repeated == "error":
        _refuse_repeated(path, times, numbers)
    else:
        times, rates, numbers = _merge_repeated(times, rates, numbers, repeated)
    return Trace(_rate_curve(path, times, rates, numbers), 1.0, path.name)


_REPEATED = ("error", "mean", "first", "last")


def _row_units(path: Path, cells: list[str], numbers: Sequence[int], column: str) -> np.ndarray:
    """Each row's factor to bit/s from its unit cell (one look-up per distinct unit)."""
    units, inverse = np.unique([cell.strip().lower() for cell in cells], return_inverse=True)
    unknown = [i for i, unit in enumerate(units) if unit not in _ROW_UNITS]
    if unknown:
        row = int(np.flatnonzero(np.isin(inverse, unknown))[0])  # the first in the file
        raise TraceError(
            located(
                path,
                f"line {numbers[row]}",
                f"{column} {_show(cells[row])} is not a rate unit",
                "write bits, Kbits, Mbits or Gbits (or bps, kbps, Mbps, Gbps), per second",
            )
        )
    return np.array([_ROW_UNITS[unit] for unit in units])[inverse]


def _check_time_options(
    path: Path, time_unit: str, time_format: object, repeated: object, step_s: object
) -> None:
    if repeated not in _REPEATED:
        raise TraceError(
            located(
                path, "repeated", f"unknown policy {repeated!r}", f"use one of {_names(_REPEATED)}"
            )
        )
    if time_format is not None and not isinstance(time_format, str):
        raise TraceError(
            located(path, "time_format", f"{time_format!r} is not text", "e.g. '%Y.%m.%d_%H.%M.%S'")
        )
    if step_s is not None:
        _positive(path, "step_s", step_s)
        if time_format is not None or time_unit != "s":
            raise TraceError(
                located(
                    path,
                    "step_s",
                    "rows are fixed steps, so the time column is not read",
                    "drop time_format and time_unit, or drop step_s",
                )
            )
    if time_format is not None and time_unit != "s":
        raise TraceError(
            located(path, "time_unit", "timestamps carry their own unit", "drop time_unit")
        )


def _timestamps(
    path: Path, cells: list[str], numbers: Sequence[int], column: str, time_format: str
) -> np.ndarray:
    """Seconds since the first row of a column of timestamps (vectorised by pandas)."""
    import pandas as pd

    parsed = pd.to_datetime(pd.Series(cells), format=time_format, errors="coerce")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if bad.size:
        i = int(bad[0])
        raise TraceError(
            located(
                path,
                f"line {numbers[i]}",
                f"{column} {_show(cells[i])} does not match time_format {time_format!r}",
                "fix the line or the format (strptime codes, e.g. '%Y.%m.%d_%H.%M.%S')",
            )
        )
    return (parsed - parsed.iloc[0]).dt.total_seconds().to_numpy(dtype=np.float64)


def _refuse_repeated(path: Path, times: np.ndarray, numbers: Sequence[int]) -> None:
    same = np.flatnonzero(np.diff(times) == 0)
    if same.size:
        i = int(same[0]) + 1
        raise TraceError(
            located(
                path,
                f"line {numbers[i]}",
                f"time {times[i]:g} s repeats the previous line's",
                "set the reader option repeated = 'mean', 'first' or 'last' to merge such rows, "
                "or step_s to read rows as fixed steps",
            )
        )


def _merge_repeated(
    times: np.ndarray, rates: np.ndarray, numbers: Sequence[int], how: str
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """One row per run of equal consecutive times, with the runs' mean, first or last rate."""
    starts = np.flatnonzero(np.concatenate(([True], np.diff(times) != 0)))
    if how == "mean":
        merged = np.add.reduceat(rates, starts) / np.diff(np.append(starts, rates.size))
    elif how == "first":
        merged = rates[starts]
    else:
        merged = rates[np.append(starts[1:], rates.size) - 1]
    return times[starts], merged, [numbers[i] for i in starts]


def _read_5gophers(path: Path, text: str, **choice: Any) -> Trace:
    """The three 5Gophers 2020 schemas (traces.md section 7), told apart by their headers."""
    rows, numbers = _csv_rows(path, text, ",")
    header, body, numbers = rows[0], rows[1:], numbers[1:]
    if not body:
        raise TraceError(located(path, None, "a header but no data rows", "add samples"))
    col = {name: i for i, name in enumerate(header)}
    wide = [name for name in header if name.endswith(_5G_WIDE_SUFFIX)]
    if {"carrier", "run_num", "seq_num", "throughput_mbps"} <= col.keys():
        _check_options(path, "5gophers throughput (data.csv)", choice, _5G_RUN_KEYS)
        body, numbers, label = _5g_run(path, col, body, numbers, choice)
        rate_name = "throughput_mbps"
    elif "seq_num" in col and wide:
        _check_options(path, "5gophers car-driving", choice, ("carrier",))
        carriers = [name.removesuffix(_5G_WIDE_SUFFIX) for name in wide]
        carrier = (
            carriers[0]
            if "carrier" not in choice
            else _match(path, "carrier", choice["carrier"], carriers)
        )
        rate_name, label = carrier + _5G_WIDE_SUFFIX, f" [carrier={carrier}]"
    elif {"seq_num", "throughput_mbps"} <= col.keys():
        _check_options(path, "5gophers walking", choice, ())
        rate_name, label = "throughput_mbps", ""
    else:
        raise TraceError(
            located(
                path,
                "header",
                f"columns {', '.join(header)} match no 5Gophers schema",
                "expect seq_num plus throughput_mbps (data.csv, walking) or "
                "<carrier>_throughput_mbps columns (car-driving); use format='csv' otherwise",
            )
        )
    seq = _floats(path, [row[col["seq_num"]] for row in body], numbers, "seq_num")
    mbps = _floats(path, [row[col[rate_name]] for row in body], numbers, rate_name)
    order = np.argsort(seq, kind="stable")
    lines = [numbers[i] for i in order]
    _check_increasing(path, seq[order], lines, "seq_num", "s")
    seconds = np.arange(order.size, dtype=np.float64)  # one second per row, gaps closed up
    curve = _rate_curve(path, seconds, mbps[order] * 1e6, lines)
    return Trace(curve, 1.0, path.name + label)


def _5g_run(
    path: Path,
    col: Mapping[str, int],
    body: list[list[str]],
    numbers: list[int],
    choice: Mapping[str, Any],
) -> tuple[list[list[str]], list[int], str]:
    """Narrow the long table by the options given, then keep its first run in file order."""
    keep = range(len(body))
    for key in _5G_RUN_KEYS:
        if key in choice:
            values = [body[i][col[key]] for i in keep]
            wanted = _match(path, key, choice[key], list(dict.fromkeys(values)))
            keep = [i for i, value in zip(keep, values, strict=True) if value == wanted]
    first = [body[keep[0]][col[key]] for key in _5G_RUN_KEYS]
    keep = [i for i in keep if [body[i][col[key]] for key in _5G_RUN_KEYS] == first]
    label = " [" + " ".join(f"{k}={v}" for k, v in zip(_5G_RUN_KEYS, first, strict=True)) + "]"
    return [body[i] for i in keep], [numbers[i] for i in keep], label


# Reader, and the options it takes besides scale.
class TraceReader(Protocol):
    """A trace format: the options it accepts (beside `scale`, which every format takes) and
    `read`, which parses one file's text into a Trace or raises TraceError naming the file,
    the line or option and the fix. A user's reader `package.module:Class` works the same way
    as a built-in (`format = "mypkg.traces:MyFormat"`)."""

    options: tuple[str, ...]

    def read(self, path: Path, text: str, **options: Any) -> Trace:
        """The file's capacity curve."""


class Mahimahi:
    """One integer millisecond timestamp per line, each a packet delivery opportunity."""

    options = ("packet_bytes",)
    read = staticmethod(_read_mahimahi)


class Pensieve:
    """`time_s throughput_Mbps` per line, no header."""

    options = ()
    read = staticmethod(_read_pensieve)


class Csv:
    """A time column and a rate column, by header name or index, in the units given."""

    options = (
        "time_col",
        "rate_col",
        "time_unit",
        "rate_unit",
        "delimiter",
        "time_format",
        "repeated",
        "step_s",
        "unit_col",
    )
    read = staticmethod(_read_csv)


class FiveGophers:
    """The three 5Gophers 2020 schemas, told apart by their headers (the options each accepts
    are checked per schema)."""

    options = _5G_RUN_KEYS
    read = staticmethod(_read_5gophers)


READERS = Registry(
    "trace format",
    {
        "mahimahi": f"{__name__}:Mahimahi",
        "pensieve": f"{__name__}:Pensieve",
        "csv": f"{__name__}:Csv",
        "5gophers": f"{__name__}:FiveGophers",
    },
    ("options", "read"),
    "simulator/network/traces.py",
)


# --------------------------------------------------------------------------- shared helpers


def _rate_curve(
    where: object,
    times_s: npt.ArrayLike,
    rates_bps: npt.ArrayLike,
    numbers: Sequence[int] | None,
    period_s: float | None = None,
) -> _RateCurve:
    """The one rate-mode builder: validates samples (naming file lines when known) and shifts
    time to start at 0."""
    times = np.asarray(times_s, dtype=np.float64)
    rates = np.asarray(rates_bps, dtype=np.float64)
    if times.ndim != 1 or times.shape != rates.shape or times.size == 0:
        raise TraceError(
            located(
                where,
                None,
                f"{times.size} times and {rates.size} rates",
                "give one rate per time, at least one sample",
            )
        )
    _check_increasing(where, times, numbers, "time", "s")
    _check_non_negative(where, rates, numbers, "rate", "bit/s")
    steps = np.diff(times)
    span = float(times[-1] - times[0])
    if period_s is None:
        if times.size < 2:
            raise TraceError(
                located(where, None, "one sample has no length", "add a sample or give a period")
            )
        period = span + float(np.median(steps))
    else:
        period = _positive(where, "period_s", period_s)
        if period <= span:
            raise TraceError(
                located(
                    where,
                    "period_s",
                    f"{period!r} s does not exceed the last sample's start ({span!r} s)",
                    "the period must be longer than the time from the first to the last sample",
                )
            )
    if not (rates > 0).any():
        raise TraceError(
            located(
                where,
                None,
                "every rate is 0, so nothing could ever be delivered",
                "use a trace with capacity",
            )
        )
    return _RateCurve(times - times[0], rates / 8.0, period)


def _check_non_negative(
    where: object, values: np.ndarray, numbers: Sequence[int] | None, what: str, unit: str
) -> None:
    bad = np.flatnonzero(~(values >= 0) | np.isinf(values))
    if bad.size:
        i = int(bad[0])
        value = float(values[i])
        problem, fix = (
            (f"{what} {value:g} {unit} is negative", f"{what} values must be >= 0")
            if value < 0
            else (f"{what} is {value}", "give a finite number")
        )
        raise TraceError(located(where, _at(numbers, i), problem, fix))


def _check_increasing(
    where: object, values: np.ndarray, numbers: Sequence[int] | None, what: str, unit: str
) -> None:
    _check_non_negative(where, values, numbers, what, unit)
    bad = np.flatnonzero(np.diff(values) <= 0)
    if bad.size:
        i = int(bad[0]) + 1
        raise TraceError(
            located(
                where,
                _at(numbers, i),
                f"{what} {values[i]:g} {unit} is not after the previous {values[i - 1]:g} {unit}",
                f"{what} values must strictly increase",
            )
        )


def _at(numbers: Sequence[int] | None, i: int) -> str:
    """Where sample i came from: a file line when there is one."""
    return f"line {numbers[i]}" if numbers is not None else f"sample {i}"


def _read_text(path: Path) -> str:
    """The whole file as text (CRLF accepted), or a TraceError saying why not."""
    text = read_text(path, TraceError, "check the path")
    if not text.strip():
        raise TraceError(located(path, None, "the file is empty", "give a trace with samples"))
    return text.replace("\r\n", "\n")


def _lines(path: Path, text: str) -> list[str]:
    """Lines without the final newline; blank and comment lines are refused, not skipped."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            kind = "comment line" if stripped else "blank line"
            raise TraceError(
                located(path, f"line {number}", f"{kind} {_show(line)}", "delete the line")
            )
    return lines


def _csv_rows(path: Path, text: str, delimiter: str) -> tuple[list[list[str]], list[int]]:
    """Rows and their line numbers; every row must have as many columns as the first."""
    reader = csv.reader(_lines(path, text), delimiter=delimiter)
    rows, numbers = [], []
    try:
        for row in reader:
            rows.append(row)
            numbers.append(reader.line_num)
    except csv.Error as exc:
        raise TraceError(
            located(path, f"line {reader.line_num + 1}", f"not CSV ({exc})", "fix the line")
        ) from None
    width = len(rows[0])
    for row, number in zip(rows, numbers, strict=True):
        if len(row) != width:
            raise TraceError(
                located(
                    path,
                    f"line {number}",
                    f"{len(row)} columns, but line {numbers[0]} has {width}",
                    f"every row needs the same columns, separated by {delimiter!r}",
                )
            )
    return rows, numbers


def _column_index(
    path: Path, option: str, col: object, header: Sequence[str] | None, width: int
) -> int:
    """A 0-based column index from a header name or an index."""
    if isinstance(col, str) and header is not None:
        if col not in header:
            raise TraceError(
                located(path, option, f"no column {col!r}", f"use one of {_names(header)}")
            )
        return header.index(col)
    if isinstance(col, int) and not isinstance(col, bool) and 0 <= col < width:
        return col
    raise TraceError(
        located(
            path,
            option,
            f"{col!r} is not a column name or an index below {width}",
            f"give a header name or an index from 0 to {width - 1}",
        )
    )


def _floats(
    path: Path,
    cells: list[str],
    numbers: Sequence[int],
    column: str,
    fix: str = "write a number such as 1.5",
) -> np.ndarray:
    """Parse a column at numpy speed; only on failure look for the line to blame."""
    try:
        return np.array(cells, dtype=np.float64)
    except ValueError:
        pass
    values = []
    for cell, number in zip(cells, numbers, strict=True):
        try:
            values.append(float(cell))
        except ValueError:
            raise TraceError(
                located(
                    path,
                    f"line {number}",
                    f"{column} {_show(cell)} is not a number",
                    fix,
                )
            ) from None
    return np.array(values)


def _check_options(path: Path, what: str, given: Iterable[str], accepted: Iterable[str]) -> None:
    valid = [*accepted, "scale"]
    unknown = [name for name in given if name not in valid]
    if unknown:
        raise TraceError(
            located(
                path,
                unknown[0],
                f"not an option of format {what}",
                f"valid options: {_names(valid)}",
            )
        )


def _match(path: Path, key: str, wanted: object, available: list[str]) -> str:
    """The available value equal to wanted, ignoring case (VERIZON, Verizon and 1 == '1')."""
    for value in available:
        if value.casefold() == str(wanted).casefold():
            return value
    raise TraceError(
        located(path, key, f"no rows with {key}={wanted!r}", f"choose one of {_names(available)}")
    )


def _unit(path: Path, option: str, value: object, factors: Mapping[str, float]) -> float:
    """The factor to seconds or bit/s for a unit name."""
    if not isinstance(value, str) or value not in factors:
        raise TraceError(
            located(path, option, f"unknown unit {value!r}", f"use one of {_names(factors)}")
        )
    return factors[value]


def _positive(where: object, option: str, value: object) -> float:
    """A finite number > 0, e.g. a scale or a packet size."""
    if (
        isinstance(value, bool)
        or not isinstance(value, Real)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise TraceError(
            located(where, option, f"{value!r} is not a number > 0", "give a finite number > 0")
        )
    return float(value)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _names(values: Iterable[object]) -> str:
    return ", ".join(str(v) for v in values)


def _show(text: str, limit: int = 40) -> str:
    """A bad value for a message, shortened: it may be a whole line of binary junk."""
    return repr(text if len(text) <= limit else text[:limit] + "...")
