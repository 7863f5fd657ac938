"""Time series from CSV (or Parquet) tables: reading, checks, gap filling, calendar features,
time splits, a scaler fitted on the training range, and forecasting windows.

A table has a time column and numeric value columns; several files (one series each) or a long
table with a series-id column give several series. Every check names the file, the column and
the first bad row (1-based data row, the header not counted); nothing is dropped silently.

Windows: with lookback :math:`L` and horizon :math:`H`, the window starting at row :math:`s`
reads rows :math:`[s, s+L)` and predicts rows :math:`[s+L, s+L+H)`. The windows of a range
:math:`[a, b)` are those whose targets lie in it: :math:`s \\in [a-L, b-L-H]` (the inputs may
reach back before :math:`a`: the Informer convention, ``border1 = a - seq_len``). Every one of
them is scored; training windows are drawn from the training range by ``(seed, step)``.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from lstmkit.utils.errors import UserError

FILLS = ("none", "ffill", "interpolate")
PRESETS = {
    # ETTh1, Zhou et al. 2021: 12/4/4 months of 30 days, hourly
    "informer": {"rows": (8640, 11520, 14400), "lookback": 96, "horizons": (24, 48, 168, 336, 720)},
    # Zeng et al. 2023 (DLinear), Nie et al. 2023 (PatchTST): the same ETTh1 borders
    "ltsf": {"rows": (8640, 11520, 14400), "lookback": 336, "horizons": (96, 192, 336, 720)},
}


@dataclass
class Series:
    """One series: ``times`` (datetime64[s], regular after :func:`regularize`), ``values``
    ``(T, C)`` float64 in the order of ``columns``."""

    name: str
    times: np.ndarray
    values: np.ndarray
    columns: list[str]
    filled: int = 0
    freq: np.timedelta64 | None = None


def _parse_time(text: str, where: str) -> np.datetime64:
    """An ISO 8601 timestamp; one with a zone (``+02:00``, ``Z``) is read in UTC."""
    return _parse_zoned(text, where)[0]


def _parse_zoned(text: str, where: str) -> tuple[np.datetime64, bool]:
    """The timestamp and whether it carried a zone (a file mixing both is an error)."""
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UserError(f"{where}: unparseable timestamp {text!r} (expected ISO 8601)") from None
    zoned = t.tzinfo is not None
    if zoned:
        t = t.astimezone(timezone.utc).replace(tzinfo=None)
    return np.datetime64(t, "s"), zoned


_PLAIN = re.compile(r"\d{4}-\d\d-\d\d(?:[ T]\d\d:\d\d(?::\d\d)?)?")


def _parse_plain(texts: list[str]) -> np.ndarray | None:
    """The fast path of :func:`_parse_zoned` (numpy's parser, about 20 times faster): when
    every timestamp is a plain ``YYYY-MM-DD[ HH:MM[:SS]]``, where numpy reads what
    ``datetime.fromisoformat`` reads; None (the row by row path, which names the first bad
    row) for anything else, or a date numpy refuses (a 30 February)."""
    texts = [t.strip() for t in texts]
    if not all(_PLAIN.fullmatch(t) for t in texts):
        return None
    try:
        return np.array(texts, dtype="datetime64[s]")
    except ValueError:
        return None


def _parse_each(texts: list[str], rows: list[int], where: str) -> np.ndarray:
    """Row by row: the first bad timestamp named by its row (``rows``, 0-based); a file mixing
    timestamps with a zone and without is an error."""
    times = np.empty(len(texts), dtype="datetime64[s]")
    first_zoned = None
    for i, (text, r) in enumerate(zip(texts, rows, strict=True)):
        at = f"{where}, row {r + 1}"
        times[i], zoned = _parse_zoned(text, at)
        if first_zoned is None:
            first_zoned = zoned
        elif zoned != first_zoned:
            has, other = ("has a", "has none") if zoned else ("has no", "has one")
            raise UserError(
                f"{at}: {text.strip()!r} {has} time zone, row {rows[0] + 1} {other} (give "
                "every timestamp with its zone, or none)"
            )
    return times


def _read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV (UTF-8, a byte-order mark skipped), or of a Parquet file
    through pyarrow. Empty lines at the end are not rows; a file without a data row, bytes that
    are not UTF-8 and a field too long for a table (csv's limit, 128 KiB) are errors naming
    the line."""
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    if path.suffix.lower() == ".parquet":
        header, rows = _read_parquet(path)
    else:
        data = path.read_bytes()
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            line = data.count(b"\n", 0, e.start) + 1
            raise UserError(
                f"{path}: line {line}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset "
                f"{e.start})"
            ) from None
        del data
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            header = next(reader, None)
            if header is None:
                raise UserError(f"{path}: empty file")
            rows = list(reader)
        except csv.Error as e:
            limit = csv.field_size_limit()
            what = f"a field of more than {limit} characters" if "limit" in str(e) else str(e)
            raise UserError(f"{path}: line {reader.line_num}: {what}") from None
        header = [h.strip() for h in header]
    while rows and not any(x.strip() for x in rows[-1]):
        rows.pop()
    if not rows:
        raise UserError(f"{path}: no data rows after the header")
    twice = [h for h, k in Counter(header).items() if k > 1]
    if twice:
        raise UserError(f"{path}: column {twice[0]!r} appears twice in the header")
    return header, rows


def read_header(path: str | Path) -> list[str]:
    """The column names of a table, without reading its rows (which columns ``--targets all``
    means, before only the needed ones are parsed)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    if path.suffix.lower() == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
        except ImportError:
            pass  # _read_rows says what to install
        except (pa.ArrowException, OSError):
            pass  # and what is wrong with the file
        return _read_rows(path)[0]
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        header = next(csv.reader(f), None)
    if header is None:
        raise UserError(f"{path}: empty file")
    return [h.strip() for h in header]


def _read_parquet(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError(
            f"{path}: reading Parquet needs pyarrow (pip install 'lstmkit[parquet]')"
        ) from None
    try:
        table = pq.read_table(path).to_pydict()
    except (pa.ArrowException, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: not a Parquet file ({first})") from None
    header = list(table)
    cols = [[("" if v is None else str(v)) for v in table[h]] for h in header]
    return header, [list(r) for r in zip(*cols, strict=True)]


def read_series(
    paths: list[str],
    time_column: str,
    columns: list[str] | None,
    series_column: str = "",
) -> list[Series]:
    """The series of ``paths`` (``columns`` None: every column but the time and id columns).
    A value that is not a number, a NaN and a missing column are errors naming file, column
    and row."""
    out: list[Series] = []
    for p in paths:
        path = Path(p)
        header, rows = _read_rows(path)
        where = str(path)
        for need in [time_column] + ([series_column] if series_column else []):
            if need not in header:
                raise UserError(f"{where}: no column {need!r} (columns: {', '.join(header)})")
        skip = {time_column, series_column}
        cols = [h for h in header if h not in skip] if columns is None else list(columns)
        for c in cols:
            if c not in header:
                raise UserError(f"{where}: no column {c!r} (columns: {', '.join(header)})")
        if not cols:
            raise UserError(f"{where}: no value columns besides {time_column!r}")
        ti = header.index(time_column)
        idx = [header.index(c) for c in cols]
        groups: dict[str, list[int]] = {}
        si, stem = header.index(series_column) if series_column else -1, path.stem
        for r, row in enumerate(rows):
            if len(row) != len(header):
                raise UserError(
                    f"{where}: row {r + 1} has {len(row)} fields, the header {len(header)}"
                )
            key = row[si] if series_column else stem
            groups.setdefault(key, []).append(r)
        for key, members in groups.items():
            texts = [rows[r][ti] for r in members]
            times = _parse_plain(texts)
            if times is None:
                times = _parse_each(texts, members, f"{where}: column {time_column!r}")
            values = np.empty((len(members), len(cols)))
            for j, (c, k) in enumerate(zip(cols, idx, strict=True)):
                for i, r in enumerate(members):
                    text = rows[r][k].strip()
                    try:
                        v = float(text)
                    except ValueError:
                        raise UserError(
                            f"{where}: column {c!r}, row {r + 1}: {text!r} is not a number"
                        ) from None
                    if math.isnan(v) or math.isinf(v):
                        raise UserError(
                            f"{where}: column {c!r}, row {r + 1}: {text!r} (NaN/inf values are "
                            "not read; fill them, or drop the rows and use --fill)"
                        )
                    values[i, j] = v
            name = key if not series_column else f"{path.stem}:{key}"
            out.append(Series(name, times, values, cols))
    return out


def regularize(s: Series, fill: str = "none", where: str = "") -> Series:
    """Check the timestamps (ordered, no duplicates) and put the series on its regular grid:
    the most common step is the frequency; a gap (a step that is a multiple of it) is an error
    for ``fill="none"``, else filled by the previous value (``ffill``) or linearly
    (``interpolate``), the filled rows counted in ``Series.filled``. Filling more rows than
    were read is an error (a mistyped date would otherwise make up the whole series)."""
    where = where or s.name
    if fill not in FILLS:
        raise UserError(f"--fill must be one of {', '.join(FILLS)}, got {fill!r}")
    if len(s.times) < 2:
        raise UserError(f"{where}: a series needs at least 2 rows, got {len(s.times)}")
    d = np.diff(s.times).astype(np.int64)
    bad = np.flatnonzero(d <= 0)
    if len(bad):
        r = int(bad[0])
        kind = "duplicate" if d[r] == 0 else "unordered"
        raise UserError(
            f"{where}: {kind} timestamps at rows {r + 1} and {r + 2} ({s.times[r]} then "
            f"{s.times[r + 1]})"
        )
    step = Counter(d.tolist()).most_common(1)[0][0]
    off = np.flatnonzero(d % step != 0)
    if len(off):
        r = int(off[0])
        raise UserError(
            f"{where}: irregular step at row {r + 2} ({s.times[r]} to {s.times[r + 1]}, the "
            f"series' step is {step} s)"
        )
    gaps = np.flatnonzero(d != step)
    freq = np.timedelta64(int(step), "s")
    if not len(gaps):
        return Series(s.name, s.times, s.values, s.columns, 0, freq)
    if fill == "none":
        r = int(gaps[0])
        raise UserError(
            f"{where}: {len(gaps)} gap(s); the first after row {r + 1} ({s.times[r]} to "
            f"{s.times[r + 1]}, {d[r] // step - 1} missing step(s)); use --fill ffill or "
            "--fill interpolate"
        )
    pos = ((s.times - s.times[0]).astype(np.int64) // step).astype(np.int64)
    n = int(pos[-1]) + 1
    if n - len(pos) > len(pos):  # before the grid is allocated: a far date would take terabytes
        r = int(gaps[np.argmax(d[gaps])])
        raise UserError(
            f"{where}: filling the gaps would add {n - len(pos)} rows to the {len(pos)} read "
            f"(more made-up rows than data; the largest gap is after row {r + 1}, "
            f"{s.times[r]} to {s.times[r + 1]})"
        )
    grid = np.arange(n)
    values = np.empty((n, s.values.shape[1]))
    if fill == "ffill":
        last = np.searchsorted(pos, grid, side="right") - 1
        values[:] = s.values[last]
    else:
        for j in range(s.values.shape[1]):
            values[:, j] = np.interp(grid, pos, s.values[:, j])
    times = s.times[0] + grid * freq
    return Series(s.name, times, values, s.columns, n - len(pos), freq)


def calendar_features(times: np.ndarray) -> np.ndarray:
    """Known-future covariates of each timestamp, scaled to [-0.5, 0.5] as in the Informer
    code's ``time_features``: hour of day / 23, day of week / 6, month / 11, each minus 0.5."""
    t = times.astype("datetime64[s]")
    hours = (t - t.astype("datetime64[D]")).astype(np.int64) // 3600
    days = t.astype("datetime64[D]").astype(np.int64)
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday (weekday 3, Monday = 0)
    month = t.astype("datetime64[M]").astype(np.int64) % 12
    return np.stack([hours / 23 - 0.5, weekday / 6 - 0.5, month / 11 - 0.5], -1)


@dataclass(frozen=True)
class Ranges:
    """Row ranges ``[start, end)`` of the training, validation and test targets."""

    train: tuple[int, int]
    valid: tuple[int, int]
    test: tuple[int, int]

    def get(self, split: str) -> tuple[int, int]:
        return getattr(self, split)


def _row_of(value: str, times: np.ndarray, what: str) -> int:
    """A border given as a row number or a date (the first row at or after it)."""
    value = value.strip()
    if value.lstrip("-").isdigit():
        return int(value)
    t = _parse_time(value, what)
    return int(np.searchsorted(times, t, side="left"))


def split_ranges(
    n: int,
    times: np.ndarray,
    split: str = "fractions",
    borders: tuple[str, str, str] = ("", "", ""),
    fractions: tuple[float, float] = (0.1, 0.2),
) -> Ranges:
    """Target ranges of one series of ``n`` rows. ``informer``/``ltsf``: the ETTh1 rows
    ``[0, 8640), [8640, 11520), [11520, 14400)``; ``rows`` or ``dates``: the borders
    (train end, valid end, test end; dates are the first row at or after); ``fractions``: the
    last ``valid + test`` share of the rows, in time order (the LTSF code's 0.7/0.1/0.2 for
    data other than ETT)."""
    if split in PRESETS:
        a, b, c = PRESETS[split]["rows"]
        if n < c:
            raise UserError(
                f"--split {split}: the preset needs {c} rows (ETTh1), the series has {n}"
            )
    elif split in ("rows", "dates"):
        if not all(borders):
            raise UserError(f"--split {split}: give --train-end, --valid-end and --test-end")
        a, b, c = (
            _row_of(v, times, f"--{k}-end")
            for v, k in zip(borders, ("train", "valid", "test"), strict=True)
        )
        c = min(c, n)
    elif split == "fractions":
        fv, ft = fractions
        if not (0 < fv < 1 and 0 < ft < 1 and fv + ft < 1):
            raise UserError(
                f"--valid-fraction {fv} and --test-fraction {ft}: each in (0, 1), sum below 1"
            )
        b = n - round(n * ft)
        a = b - round(n * fv)
        c = n
    else:
        raise UserError(f"unknown --split {split!r}")
    if not 0 < a < b < c <= n:
        raise UserError(f"--split {split}: borders {a}, {b}, {c} must increase within the {n} rows")
    return Ranges((0, a), (a, b), (b, c))


def window_starts(rng: tuple[int, int], lookback: int, horizon: int, *, train: bool) -> np.ndarray:
    """Start rows of the windows whose targets lie in ``rng = [a, b)``. Training windows read
    only training rows (``s >= a``); evaluation windows reach back ``lookback`` rows before
    ``a`` so that the first target is row ``a`` (never before row 0)."""
    a, b = rng
    first = a if train else max(0, a - lookback)
    last = b - lookback - horizon
    if last < first:
        return np.zeros(0, dtype=np.int64)
    return np.arange(first, last + 1, dtype=np.int64)


@dataclass
class Scaler:
    """Standardisation :math:`z = (x - \\mu) / \\sigma` per column, :math:`\\mu, \\sigma`
    (population std, as sklearn's StandardScaler) from the training rows only; a constant
    column keeps :math:`\\sigma = 1`."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray) -> Scaler:
        mean = values.mean(0)
        std = values.std(0)
        return cls(mean, np.where(std > 0, std, 1.0))

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.std

    def inverse(self, z: np.ndarray) -> np.ndarray:
        return z * self.std + self.mean

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> Scaler:
        return cls(np.asarray(d["mean"], dtype=np.float64), np.asarray(d["std"], dtype=np.float64))


@dataclass
class WindowSet:
    """All windows of one split over several series: ``index`` rows are (series, start)."""

    index: np.ndarray
    data: list[np.ndarray] = field(default_factory=list)
    """Scaled values per series, ``(T, C)`` float32."""
    calendar: list[np.ndarray] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.index)


def check_sizes(lookback: int, horizon: int) -> None:
    if lookback < 1:
        raise UserError(f"--lookback must be >= 1, got {lookback}")
    if horizon < 1:
        raise UserError(f"--horizon must be >= 1, got {horizon}")
