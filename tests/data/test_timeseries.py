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
