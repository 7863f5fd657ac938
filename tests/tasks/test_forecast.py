"""The forecast task end to end on a slice of ETTh1: train, predict --input, evaluate --plots,
inspect; resume exactness; the CLI's one-line errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from lstmkit.cli.main import cli_main
from lstmkit.models.forecaster import ForecasterConfig
from lstmkit.tasks.forecast import ForecastConfig, ForecastTask
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
