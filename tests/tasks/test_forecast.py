"""The forecast task end to end on a slice of ETTh1: train, predict --input, evaluate --plots,
inspect; resume exactness; the CLI's one-line errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lstmkit.cli.main import cli_main
from lstmkit.infer.load import load_trained
from lstmkit.models.forecaster import ForecasterConfig
from lstmkit.tasks.forecast import ForecastConfig, ForecastTask
from lstmkit.utils.errors import UserError
from tests.data.test_timeseries import ETTH1, write_table
from tests.resume_check import assert_resume_is_exact

needs_etth1 = pytest.mark.skipif(not ETTH1.exists(), reason=f"ETTh1 not present at {ETTH1}")


@pytest.fixture(scope="module")
def etth1_slice(tmp_path_factory) -> Path:
    if not ETTH1.exists():
        pytest.skip(f"ETTh1 not present at {ETTH1}")
    lines = ETTH1.read_text().splitlines()
    path = tmp_path_factory.mktemp("ett") / "ett-slice.csv"
    path.write_text("\n".join(lines[:401]) + "\n")
    return path


TRAIN = ["--lookback", "24", "--horizon", "6", "--hidden-size", "8", "--steps", "4",
         "--eval-every", "2", "--batch-size", "8", "--device", "cpu", "--threads", "1",
         "--no-progress", "--no-curves"]  # fmt: skip


@pytest.fixture(scope="module")
def trained(etth1_slice, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "r"
    argv = ["train", "forecast", "--data", str(etth1_slice), "--targets", "all", "--calendar",
            "--likelihood", "gaussian", "--out", str(out), *TRAIN]  # fmt: skip
    assert cli_main(argv) == 0
    return out


@needs_etth1
def test_predict_writes_the_rows_after_the_input(trained, etth1_slice, tmp_path):
    recent = tmp_path / "recent.csv"
    lines = etth1_slice.read_text().splitlines()
    recent.write_text("\n".join([lines[0], *lines[-30:]]) + "\n")
    out = tmp_path / "fc.csv"
    assert cli_main(["predict", str(trained), "--input", str(recent), "--output", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 6
    last = np.datetime64(lines[-1].split(",")[0].replace(" ", "T"))
    for k, r in enumerate(rows):  # the time column continued at the series' hourly step
        assert np.datetime64(r["date"].replace(" ", "T")) == last + np.timedelta64(k + 1, "h")
        assert float(r["OT_q0.1"]) < float(r["OT"]) < float(r["OT_q0.9"])
    assert {"HUFL", "LULL", "OT_q0.5"} <= set(rows[0])


@needs_etth1
def test_evaluate_plots_and_inspect(trained, etth1_slice, tmp_path, capsys):
    capsys.readouterr()
    assert cli_main(["evaluate", str(trained), "--json", "--plots", str(tmp_path / "p")]) == 0
    metrics = json.loads(capsys.readouterr().out)["test"]
    # fractions 0.7/0.1/0.2 of 400 rows: test rows [320, 400), every window of it scored
    assert metrics["windows"] == 80 - 6 + 1
    assert 0 <= metrics["coverage"] <= 1 and metrics["nominal"] == pytest.approx(0.8)
    assert metrics["crps"] > 0 and metrics["mse_orig"] > 0
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == [
        "forecast-test-first.png", "forecast-test-last.png", "forecast-test-middle.png"
    ]  # fmt: skip
    assert cli_main(["inspect", str(trained), "--input", str(etth1_slice), "--out",
                     str(tmp_path / "i")]) == 0  # fmt: skip
    assert (tmp_path / "i" / "forecast-1.png").stat().st_size > 10_000


@needs_etth1
def test_segment_model_trains_plots_and_draws_one_gate_step_per_segment(etth1_slice, tmp_path):
    """--segment 5 over a 24-row lookback: 4 encoder steps, ending at lookback rows 8, 13, 18,
    23 (the oldest 4 rows unused); the decoder's steps are not drawn as lookback gates."""
    out = tmp_path / "seg"
    argv = ["train", "forecast", "--data", str(etth1_slice), "--targets", "all", "--calendar",
            "--segment", "5", "--channel-independent", "--revin", "--out", str(out),
            *TRAIN]  # fmt: skip
    assert cli_main(argv) == 0
    task, model, _ = load_trained(out / "best", torch.device("cpu"))
    x = np.zeros((1, 24, len(task.inputs) + task.n_calendar), np.float32)
    fut = np.zeros((1, 6, task.n_calendar), np.float32)
    gates = task._gates(model, torch.from_numpy(x), torch.from_numpy(fut), "cpu")
    assert gates["rows"].tolist() == [8, 13, 18, 23]
    assert gates["f"].shape == (4, 8)
    assert task._label() == "lstm over segments of 5"  # the plots' titles
    assert cli_main(["evaluate", str(out), "--plots", str(tmp_path / "p")]) == 0
    assert cli_main(["inspect", str(out), "--input", str(etth1_slice), "--out",
                     str(tmp_path / "i")]) == 0  # fmt: skip
    assert (tmp_path / "i" / "forecast-1.png").stat().st_size > 10_000


@needs_etth1
def test_baselines_train_and_evaluate_with_the_same_commands(etth1_slice, tmp_path, capsys):
    """A last-value run scores exactly the last-value forecast computed by hand."""
    out = tmp_path / "last"
    argv = ["train", "forecast", "--data", str(etth1_slice), "--model", "last", "--out",
            str(out), *TRAIN]  # fmt: skip
    assert cli_main(argv) == 0
    capsys.readouterr()
    assert cli_main(["evaluate", str(out), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)["test"]
    ot = np.loadtxt(etth1_slice, delimiter=",", skiprows=1, usecols=7)
    mu, sd = ot[:280].mean(), ot[:280].std()
    z = (ot - mu) / sd
    errs = [z[s + 24 : s + 30] - z[s + 23] for s in range(320 - 24, 400 - 30 + 1)]
    assert got["mse"] == pytest.approx(np.mean(np.square(errs)), rel=1e-5)


def test_resumed_run_ends_at_the_same_weights(tmp_path):
    from lstmkit.train.config import TrainConfig
    from lstmkit.train.trainer import train

    data = write_table(tmp_path / "s.csv", 120, cols=("a", "OT"),
                       value=lambda r, j: float(np.sin(r / 5 + j)))  # fmt: skip

    def run(out, steps, resume=False):
        cfg = TrainConfig(
            steps=steps, batch_size=8, eval_every=3, lr=5e-3, device="cpu", progress=False,
            threads=1, out=str(out), resume=resume, curves=False,
        )  # fmt: skip
        task = ForecastTask(
            ForecastConfig(data=str(data), targets="all", lookback=12, horizon=4),
            ForecasterConfig(model="lstm-seq2seq", likelihood="student-t"),
        )
        train(task, cfg)

    assert_resume_is_exact(run, tmp_path, steps=6, stop=3)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--horizon", "0"], "--horizon must be >= 1, got 0"),
        (["--target", "nope"], "no column 'nope'"),
        (["--lookback", "300", "--horizon", "140"], "shorter than --lookback + --horizon = 440"),
        (["--model", "seasonal168"], "seasonal naive of period 168 needs --lookback >= 168"),
        (["--split", "informer"], "--split informer: the preset needs 14400 rows"),
    ],
)
def test_cli_errors_are_one_line_with_status_2(tmp_path, capsys, extra, message):
    data = write_table(tmp_path / "s.csv", 400, cols=("OT",))
    argv = ["train", "forecast", "--data", str(data), "--lookback", "24", "--out",
            str(tmp_path / "o"), "--no-progress", *extra]  # fmt: skip
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


@needs_etth1
def test_predict_without_input_forecasts_after_the_data_file(trained, etth1_slice, capsys):
    capsys.readouterr()
    assert cli_main(["predict", str(trained)]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    last = etth1_slice.read_text().splitlines()[-1].split(",")[0]
    first = np.datetime64(last.replace(" ", "T")) + np.timedelta64(1, "h")
    assert len(rows) == 6 and rows[0]["date"] == str(first).replace("T", " ")


def test_quantile_metrics_against_a_hand_computation(tmp_path):
    """evaluate's crps (twice the mean pinball), coverage of [q0.1, q0.9] and mase, computed
    again here from the model's own outputs on every test window."""
    import torch

    from lstmkit.models import forecast_metrics as fm

    data = write_table(tmp_path / "s.csv", 150, cols=("OT",),
                       value=lambda r, j: float(np.sin(r / 3) + 0.01 * r))  # fmt: skip
    task = ForecastTask(
        ForecastConfig(data=str(data), lookback=12, horizon=3, mase_season=2),
        ForecasterConfig(likelihood="quantile", quantiles="0.1,0.5,0.9"),
    )
    model = task.build_model().eval()
    with torch.no_grad():
        got = task.evaluate(model, "test", torch.device("cpu"))
        b = task._batch(task._sets["test"])
        p = model(b.x)
    levels = torch.tensor([0.1, 0.5, 0.9])
    assert got["windows"] == 30 - 3 + 1
    assert got["crps"] == pytest.approx(float(2 * fm.pinball(b.y, p, levels).mean()), rel=1e-5)
    inside = ((b.y >= p[..., 0]) & (b.y <= p[..., 2])).float().mean()
    assert got["coverage"] == pytest.approx(float(inside)) and got["nominal"] == pytest.approx(0.8)
    std = task.scaler.std[0]
    train = task.scaler.inverse(task._scaled[0][:105].astype(np.float64))[:, 0]
    scale = np.abs(train[2:] - train[:-2]).mean()
    mae = float((p[..., 1] - b.y).abs().mean()) * std
    assert got["mase"] == pytest.approx(mae / scale, rel=1e-4)
    assert got["mae_orig"] == pytest.approx(mae, rel=1e-4)


def test_inspect_lines_errors_name_the_input_not_a_temporary_file(tmp_path):
    """inspect --input gives the task the file's lines: a header-only file (one line) is a
    table without rows, not a path, and a bad cell is named in the input, not in the
    temporary copy the reader is given."""
    import torch

    data = write_table(tmp_path / "s.csv", 60, cols=("OT",))
    task = ForecastTask(
        ForecastConfig(data=str(data), lookback=4, horizon=2), ForecasterConfig(model="last")
    )
    model, cpu = task.build_model().eval(), torch.device("cpu")
    with pytest.raises(UserError, match=r"^inspect input: no data rows after the header$"):
        task.inspect(model, ["date,OT"], tmp_path / "i", cpu)
    lines = data.read_text().splitlines()[:8]
    lines[3] = lines[3].split(",")[0] + ",nan"
    with pytest.raises(UserError, match=r"^inspect input: column 'OT', row 3: 'nan'") as e:
        task.inspect(model, lines, tmp_path / "i", cpu)
    assert "tmp" not in str(e.value).split("(")[0]
    with pytest.raises(UserError, match=r"missing.csv: no such file"):  # one path: still a path
        task.inspect(model, [str(tmp_path / "missing.csv")], tmp_path / "i", cpu)
    good = data.read_text().splitlines()[:8]
    assert task.inspect(model, good, tmp_path / "i", cpu)[0].is_file()


def test_a_text_column_that_is_not_read_is_not_parsed_and_the_file_is_read_once(
    tmp_path, monkeypatch
):
    """--target OT reads the time column and OT only: a station-name column beside them is no
    error (it is one with --targets all, which reads it), and training, its data report and
    the forecast after the data (``examples``, printed at the end) read the file once."""
    from lstmkit.data import timeseries as ts

    data = write_table(tmp_path / "s.csv", 60, cols=("OT",))
    lines = data.read_text().splitlines()
    text = tmp_path / "t.csv"
    text.write_text("\n".join(f"{ln},{'station' if k == 0 else 'north'}"
                              for k, ln in enumerate(lines)) + "\n")  # fmt: skip
    reads = []
    real = ts._read_rows
    monkeypatch.setattr(ts, "_read_rows", lambda p: reads.append(p) or real(p))
    task = ForecastTask(
        ForecastConfig(data=str(text), lookback=4, horizon=2), ForecasterConfig(model="last")
    )
    task.data_report()
    got = task.examples()
    assert len(reads) == 1, reads
    assert task.inputs == ["OT"] and len(got) == 2
    want = ForecastTask(
        ForecastConfig(data=str(data), lookback=4, horizon=2), ForecasterConfig(model="last")
    )
    np.testing.assert_array_equal(task._scaled[0], want._scaled[0])
    assert got == [g.replace("s.csv", "t.csv") for g in want.examples()]
    with pytest.raises(UserError, match=r"t.csv: column 'station', row 1: 'north' is not a"):
        ForecastTask(
            ForecastConfig(data=str(text), targets="all", lookback=4, horizon=2),
            ForecasterConfig(model="last"),
        )


def test_batches_of_windows_from_two_series_with_calendar_are_their_slices(tmp_path):
    """_batch (gathered per series) against slicing each window by hand, in a shuffled order
    that mixes the two series."""
    a = write_table(tmp_path / "a.csv", 40, cols=("x", "OT"))
    b = write_table(tmp_path / "b.csv", 30, cols=("x", "OT"), value=lambda r, j: -r - j / 10)
    task = ForecastTask(
        ForecastConfig(data=f"{a},{b}", lookback=5, horizon=3, calendar=True, covariates="x"),
        ForecasterConfig(model="last"),
    )
    index = task._sets["train"][np.random.default_rng(0).permutation(len(task._sets["train"]))]
    assert len(set(index[:, 0])) == 2
    got = task._batch(index)
    for n, (k, s) in enumerate(index):
        v, c = task._scaled[k], task._cal[k]
        want_x = np.concatenate([v[s : s + 5], c[s : s + 5]], 1)
        np.testing.assert_array_equal(got.x[n].numpy(), want_x)
        np.testing.assert_array_equal(got.future[n].numpy(), c[s + 5 : s + 8])
        np.testing.assert_array_equal(got.y[n].numpy(), v[s + 5 : s + 8, :1])
    assert task.inputs == ["OT", "x"] and got.x.shape == (len(index), 5, 2 + 3)
    assert task._batch(index[:0]).y.shape == (0, 3, 1)
