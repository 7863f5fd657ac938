"""Time-series reading, checks, splits, scaler and windows against hand-built tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lstmkit.data import timeseries as ts
from lstmkit.models.forecaster import ForecasterConfig
from lstmkit.tasks.forecast import ForecastConfig, ForecastTask
from lstmkit.utils.errors import UserError

ETTH1 = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "etth1" / "ETTh1.csv"
needs_etth1 = pytest.mark.skipif(not ETTH1.exists(), reason=f"ETTh1 not present at {ETTH1}")


def write_table(path: Path, n: int, cols=("x",), start="2020-01-01 00:00:00", step_h=1,
                value=lambda r, j: float(r + 100 * j)) -> Path:  # fmt: skip
    t0 = np.datetime64(start.replace(" ", "T"), "s")
    lines = [",".join(["date", *cols])]
    for r in range(n):
        t = str(t0 + np.timedelta64(r * step_h, "h")).replace("T", " ")
        lines.append(",".join([t, *(f"{value(r, j)}" for j in range(len(cols)))]))
    path.write_text("\n".join(lines) + "\n")
    return path


def _task(path, **kw):
    cfg = dict(data=str(path), target="x", split="rows", train_end="10", valid_end="15",
               test_end="20", lookback=3, horizon=2)  # fmt: skip
    cfg.update(kw)
    return ForecastTask(ForecastConfig(**cfg), ForecasterConfig(model="last"))


def test_windows_of_each_split_and_the_train_only_scaler(tmp_path):
    """x = row number: every window's rows can be read off its values."""
    task = _task(write_table(tmp_path / "a.csv", 20))
    mean, std = np.arange(10).mean(), np.arange(10).std()
    assert task.scaler.mean[0] == pytest.approx(mean) and task.scaler.std[0] == pytest.approx(std)
    # (first inputs, first targets, last inputs, last targets, count) per split
    expect = {
        "train": ([0, 1, 2], [3, 4], [5, 6, 7], [8, 9], 6),
        "valid": ([7, 8, 9], [10, 11], [10, 11, 12], [13, 14], 4),
        "test": ([12, 13, 14], [15, 16], [15, 16, 17], [18, 19], 4),
    }
    for split, (x0, y0, x1, y1, n) in expect.items():
        windows = task._sets[split]
        assert len(windows) == n
        b = task._batch(windows[[0, -1]])
        raw_x = b.x[..., 0].numpy() * std + mean
        raw_y = b.y[..., 0].numpy() * std + mean
        np.testing.assert_allclose(raw_x, [x0, x1], atol=1e-5)
        np.testing.assert_allclose(raw_y, [y0, y1], atol=1e-5)


def test_fractions_and_dates_give_the_same_borders(tmp_path):
    times = np.datetime64("2020-01-01T00", "s") + np.arange(100) * np.timedelta64(1, "h")
    r = ts.split_ranges(100, times, "fractions", fractions=(0.1, 0.2))
    assert (r.train, r.valid, r.test) == ((0, 70), (70, 80), (80, 100))
    d = ts.split_ranges(100, times, "dates", ("2020-01-03 22:00", "2020-01-04 08:00", "999"))
    assert (d.train, d.valid, d.test) == ((0, 70), (70, 80), (80, 100))


def test_calendar_features_by_hand():
    t = np.array(["2016-07-01T00:00", "2018-06-26T19:00"], dtype="datetime64[s]")
    # 2016-07-01 was a Friday (weekday 4), 2018-06-26 a Tuesday (1)
    want = [[-0.5, 4 / 6 - 0.5, 6 / 11 - 0.5], [19 / 23 - 0.5, 1 / 6 - 0.5, 5 / 11 - 0.5]]
    np.testing.assert_allclose(ts.calendar_features(t), want)


@needs_etth1
def test_informer_borders_on_etth1():
    L, H = 96, 24
    task = ForecastTask(
        ForecastConfig(data=str(ETTH1), split="informer", lookback=L, horizon=H),
        ForecasterConfig(model="last"),
    )
    raw = np.loadtxt(ETTH1, delimiter=",", skiprows=1, usecols=7)
    assert task.scaler.mean[0] == pytest.approx(raw[:8640].mean())
    assert task.scaler.std[0] == pytest.approx(raw[:8640].std())
    for split, (a, b) in {
        "train": (0, 8640),
        "valid": (8640, 11520),
        "test": (11520, 14400),
    }.items():
        w = task._sets[split]
        assert len(w) == (b - a - L - H + 1 if split == "train" else b - a - H + 1)
        first, last = task._batch(w[[0, -1]]).y[..., 0].numpy() * task.scaler.std[0]
        first, last = first + task.scaler.mean[0], last + task.scaler.mean[0]
        start = a + L if split == "train" else a  # valid/test windows reach back L rows
        np.testing.assert_allclose(first, raw[start : start + H], atol=1e-4)
        np.testing.assert_allclose(last, raw[b - H : b], atol=1e-4)


def test_gaps_are_an_error_or_filled_and_counted(tmp_path):
    p = write_table(tmp_path / "g.csv", 12)
    lines = p.read_text().splitlines()
    p.write_text("\n".join(lines[:5] + lines[7:]) + "\n")  # rows 4 and 5 (0-based) missing
    s = ts.read_series([str(p)], "date", ["x"])[0]
    with pytest.raises(UserError, match=r"1 gap\(s\).*after row 4.*2 missing.*--fill"):
        ts.regularize(s)
    f = ts.regularize(s, "ffill")
    assert f.filled == 2 and f.values[:, 0].tolist() == [0, 1, 2, 3, 3, 3, 6, 7, 8, 9, 10, 11]
    i = ts.regularize(s, "interpolate")
    assert i.filled == 2 and i.values[:, 0].tolist() == list(range(12))
    assert (np.diff(i.times) == np.timedelta64(3600, "s")).all()


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda ls: ls[:3] + [ls[4], ls[3]] + ls[5:], r"unordered timestamps at rows 3 and 4"),
        (lambda ls: ls[:4] + [ls[3]] + ls[4:], r"duplicate timestamps at rows 3 and 4"),
        (lambda ls: ls[:2] + ["yesterday,1.0"] + ls[3:], r"column 'date', row 2: unparseable"),
        (lambda ls: ls[:3] + [ls[3].split(",")[0] + ",abc"] + ls[4:],
         r"a.csv: column 'x', row 3: 'abc' is not a number"),
        (lambda ls: ls[:3] + [ls[3].split(",")[0] + ",nan"] + ls[4:],
         r"a.csv: column 'x', row 3: 'nan' \(NaN"),
    ],
)  # fmt: skip
def test_bad_tables_name_file_column_and_row(tmp_path, edit, message):
    p = write_table(tmp_path / "a.csv", 30)
    p.write_text("\n".join(edit(p.read_text().splitlines())) + "\n")
    with pytest.raises(UserError, match=message):
        _task(p)


def test_missing_column_short_series_and_zero_sizes(tmp_path):
    p = write_table(tmp_path / "a.csv", 30)
    with pytest.raises(UserError, match=r"a.csv: no column 'OT' \(columns: date, x\)"):
        _task(p, target="OT")
    with pytest.raises(UserError, match="8 rows, shorter than --lookback \\+ --horizon = 10"):
        _task(write_table(tmp_path / "s.csv", 8), lookback=6, horizon=4, split="fractions")
    for k in ("lookback", "horizon"):
        with pytest.raises(UserError, match=f"--{k} must be >= 1, got 0"):
            _task(p, **{k: 0})


def test_long_table_and_several_files_are_several_series(tmp_path):
    a = write_table(tmp_path / "a.csv", 20)
    b = write_table(tmp_path / "b.csv", 20, value=lambda r, j: 1000.0 + r)
    two = _task(f"{a},{b}")
    assert len(two._series) == 2 and len(two._sets["test"]) == 8
    long = tmp_path / "long.csv"
    rows = [ln + ",A" for ln in a.read_text().splitlines()[1:]]
    rows += [ln + ",B" for ln in b.read_text().splitlines()[1:]]
    long.write_text("date,x,id\n" + "\n".join(rows) + "\n")
    t = _task(long, series_column="id")
    assert [s.name for s in t._series] == ["long:A", "long:B"]
    np.testing.assert_allclose(t.scaler.mean, two.scaler.mean)


def test_parquet_reads_as_the_csv(tmp_path):
    pa = pytest.importorskip("pyarrow", reason="pyarrow (lstmkit[parquet]) not installed")
    import pyarrow.parquet as pq

    p = write_table(tmp_path / "a.csv", 20, cols=("x", "y"))
    rows = [ln.split(",") for ln in p.read_text().splitlines()[1:]]
    table = pa.table({"date": [r[0] for r in rows], "x": [float(r[1]) for r in rows],
                      "y": [float(r[2]) for r in rows]})  # fmt: skip
    pq.write_table(table, tmp_path / "a.parquet")
    a = ts.read_series([str(p)], "date", None)[0]
    b = ts.read_series([str(tmp_path / "a.parquet")], "date", None)[0]
    assert b.columns == ["x", "y"] and (a.times == b.times).all()
    np.testing.assert_array_equal(a.values, b.values)


def _hourly(n: int, header: str = "date,x") -> bytes:
    rows = [f"2020-01-01 {h:02d}:00:00,{h}" for h in range(n)]
    return ("\n".join([header, *rows]) + "\n").encode()


@pytest.mark.parametrize(
    "data, message",
    [
        (_hourly(5) + b"2020-01-01 05:00:00,\xff\n", r"a.csv: line 7: not UTF-8 text \(byte 0xff"),
        (_hourly(5) + b"2020-01-01 05:00:00," + b"1" * 200_000 + b"\n",
         r"a.csv: line 7: a field of more than 131072 characters"),
        (b"date,x\n", r"a.csv: no data rows after the header"),
        (b"date,x\n\n", r"a.csv: no data rows after the header"),
        (_hourly(5, "date,x,x"), r"a.csv: column 'x' appears twice in the header"),
        (_hourly(5).replace(b"03:00:00", b"03:00:00+02:00"),
         r"a.csv: column 'date', row 4: '2020-01-01 03:00:00\+02:00' has a time zone, "
         r"row 1 has none"),
    ],
)  # fmt: skip
def test_unreadable_tables_are_one_user_error_naming_file_and_line(tmp_path, data, message):
    """Bytes that are not UTF-8, a giant field, no data rows, a column named twice (the second
    would be read as the first) and a mix of zoned and plain timestamps: each one error."""
    p = tmp_path / "a.csv"
    p.write_bytes(data)
    with pytest.raises(UserError, match=message):
        ts.read_series([str(p)], "date", None)


def test_a_file_that_is_not_parquet_is_one_user_error(tmp_path):
    pytest.importorskip("pyarrow", reason="pyarrow (lstmkit[parquet]) not installed")
    p = tmp_path / "a.parquet"
    p.write_bytes(_hourly(5))
    with pytest.raises(UserError, match=r"a.parquet: not a Parquet file \("):
        ts.read_series([str(p)], "date", None)


def test_bom_crlf_and_zoned_timestamps_read_as_the_plain_file(tmp_path):
    """A UTF-8 byte-order mark (Excel's CSV) and CRLF line ends change nothing; timestamps
    that all carry a zone are read in UTC (+02:00 is two hours earlier)."""
    plain = tmp_path / "p.csv"
    plain.write_bytes(_hourly(6))
    want = ts.read_series([str(plain)], "date", None)[0]
    bom = tmp_path / "b.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + _hourly(6).replace(b"\n", b"\r\n"))
    got = ts.read_series([str(bom)], "date", None)[0]
    assert got.columns == ["x"] and (got.times == want.times).all()
    np.testing.assert_array_equal(got.values, want.values)
    zoned = tmp_path / "z.csv"
    zoned.write_bytes(_hourly(6).replace(b":00:00,", b":00:00+02:00,"))
    z = ts.read_series([str(zoned)], "date", None)[0]
    assert (z.times == want.times - np.timedelta64(2, "h")).all()


def test_filling_more_rows_than_were_read_is_an_error_before_allocating(tmp_path):
    """A far timestamp (a typo for the year) with --fill would make up terabytes of rows: the
    check comes before the grid is built, and says how many rows it would add."""
    p = tmp_path / "far.csv"
    p.write_bytes(_hourly(6) + b"9999-12-31 23:00:00,6\n")
    s = ts.read_series([str(p)], "date", None)[0]
    hours = (np.datetime64("9999-12-31T23") - np.datetime64("2020-01-01T05")).astype(int)
    with pytest.raises(UserError, match=f"far.csv: filling the gaps would add {hours - 1} rows"):
        ts.regularize(s, "ffill", "far.csv")
    for last, ok in ((9, True), (10, False)):  # rows at hours 0-3 and `last`: 5 read
        p.write_bytes(_hourly(4) + f"2020-01-01 {last:02d}:00:00,9\n".encode())
        s = ts.read_series([str(p)], "date", None)[0]
        if ok:  # as many made-up rows as read ones: filled
            assert ts.regularize(s, "ffill").filled == 5
        else:
            with pytest.raises(UserError, match="would add 6 rows to the 5 read"):
                ts.regularize(s, "interpolate")


def test_plain_timestamps_read_fast_as_row_by_row():
    """numpy's parser (the fast path) and datetime.fromisoformat agree on the plain forms; a
    date numpy refuses falls back to the row by row path, which names the row."""
    texts = ["2020-01-01", "2020-02-29 05:06", "2020-02-29T05:06:07", " 1999-12-31 23:59:59 "]
    fast = ts._parse_plain(texts)
    slow = ts._parse_each(texts, list(range(4)), "t")
    assert fast is not None and (fast == slow).all()
    assert slow[1] == np.datetime64("2020-02-29T05:06:00")
    for odd in (["2021-02-29"], ["2020-01-01 00:00:00.5"], ["2020"], ["NaT"], ["today"]):
        assert ts._parse_plain(odd) is None
    with pytest.raises(UserError, match=r"t, row 2: unparseable timestamp '2021-02-29'"):
        ts._parse_each(["2021-02-28", "2021-02-29"], [0, 1], "t")
