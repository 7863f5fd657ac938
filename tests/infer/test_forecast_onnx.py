"""Forecast runs out of the trainer: ``lstmkit quantize`` (int8 and bf16, the LSTM and the
encoder-decoder with RevIN and channel independence; a baseline has no LSTM: one line, status
2), ``lstmkit export`` of a quantized run, and the torch-free predictor on a forecast export
(``python -m lstmkit.infer.onnx_predict model.onnx --input recent.csv --output out.csv``)
against ``lstmkit predict RUN --input recent.csv``, its bad-input errors the torch path's."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")

from lstmkit.cli.main import cli_main  # noqa: E402
from lstmkit.export.tasks import export_forms  # noqa: E402
from lstmkit.infer import onnx_predict  # noqa: E402
from lstmkit.infer.export import export_task_model, metadata_path  # noqa: E402
from lstmkit.infer.load import load_trained  # noqa: E402
from lstmkit.kernels.cpu import quant  # noqa: E402
from tests.data.test_timeseries import write_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CPU = torch.device("cpu")
L, H = 12, 3
TRAIN = ["--lookback", str(L), "--horizon", str(H), "--hidden-size", "6", "--steps", "4",
         "--eval-every", "2", "--batch-size", "8", "--device", "cpu", "--threads", "1",
         "--no-progress", "--no-curves"]  # fmt: skip
RUNS = {
    "gaussian": ["--targets", "all", "--calendar", "--likelihood", "gaussian"],
    "seq2seq": "--targets all --calendar --model lstm-seq2seq --likelihood quantile "
    "--channel-independent --revin".split(),
    "student-t": ["--target", "OT", "--likelihood", "student-t", "--revin"],
    "dlinear": ["--targets", "all", "--model", "dlinear", "--kernel", "5"],
}
needs_quant = pytest.mark.skipif(
    not quant.is_available(), reason=f"quantized CPU kernel unavailable: {quant.build_error()}"
)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fc") / "series.csv"
    return write_table(path, 200, cols=("a", "b", "OT"), value=wave)


def wave(r: int, j: int) -> float:
    return float(10 + np.sin(r / 4 + j) * (j + 1) + 0.02 * r)


@pytest.fixture(scope="module")
def recent(data, tmp_path_factory) -> Path:
    lines = data.read_text().splitlines()
    path = tmp_path_factory.mktemp("recent") / "recent.csv"
    path.write_text("\n".join([lines[0], *lines[-20:]]) + "\n")
    return path


class Runs:
    """Each run trained once, when a test first asks for it."""

    def __init__(self, root: Path, data: Path):
        self.root, self.data, self.done = root, data, {}

    def __call__(self, name: str) -> Path:
        if name not in self.done:
            out = self.root / name
            argv = ["train", "forecast", "--data", str(self.data), *RUNS[name], "--out",
                    str(out), *TRAIN]  # fmt: skip
            assert cli_main(argv) == 0
            self.done[name] = out
        return self.done[name]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data) -> Runs:
    return Runs(tmp_path_factory.mktemp("runs"), data)


def one_error(capsys) -> str:
    lines = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("lstmkit: error: "), lines
    return lines[0]


def evaluate(run: Path, capsys) -> dict:
    capsys.readouterr()
    assert cli_main(["evaluate", str(run), "--device", "cpu", "--json"]) == 0
    return json.loads(capsys.readouterr().out)["test"]


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------- quantize


@needs_quant
@pytest.mark.parametrize("name, mode", [("gaussian", "int8"), ("seq2seq", "int8"),
                                        ("seq2seq", "bf16")])  # fmt: skip
def test_a_quantized_run_evaluates_and_predicts_near_the_float_run(
    runs, recent, name, mode, tmp_path, capsys
):
    """The metrics of ``lstmkit evaluate Q`` against the float run's, within what the point
    forecasts' own difference ``d`` (quantized - float, measured here on every test window)
    allows: :math:`|\\mathrm{mse}_q - \\mathrm{mse}_f| = |\\overline{2ed + d^2}| \\le
    2\\sqrt{\\mathrm{mse}_f}\\,\\mathrm{rms}(d) + \\mathrm{rms}(d)^2` (Cauchy-Schwarz) and
    :math:`|\\mathrm{mae}_q - \\mathrm{mae}_f| \\le \\overline{|d|}`; and ``d`` itself within
    5% of the forecasts' size (int8 moves each weight by at most 1/254 of its row's largest
    and each multiplied activation by as much; bf16 by 2^-9 relative)."""
    run, q = runs(name), tmp_path / "q"
    capsys.readouterr()
    assert cli_main(["quantize", str(run), "--out", str(q), "--mode", mode]) == 0
    got, want = evaluate(q, capsys), evaluate(run, capsys)
    task, fmodel, _ = load_trained(run, CPU)
    _, qmodel, _ = load_trained(q, CPU)
    task._ensure()
    b = task._batch(task._sets["test"])
    fut = b.future if b.future.shape[-1] else None
    with torch.no_grad():
        pf, pq = fmodel.point(fmodel(b.x, fut)), qmodel.point(qmodel(b.x, fut))
    d = pq - pf
    rms = float(d.pow(2).mean().sqrt())
    assert 0 < rms < 0.05 * float(pf.pow(2).mean().sqrt())
    slack = 1e-6 * want["mse"]  # the float sums' own rounding
    assert abs(got["mse"] - want["mse"]) <= 2 * math.sqrt(want["mse"]) * rms + rms**2 + slack
    assert abs(got["mae"] - want["mae"]) <= float(d.abs().mean()) + 1e-6 * want["mae"]
    assert got["windows"] == want["windows"]
    out_q, out_f = tmp_path / "q.csv", tmp_path / "f.csv"
    for r, out in ((q, out_q), (run, out_f)):
        argv = ["predict", str(r), "--input", str(recent), "--output", str(out)]
        assert cli_main(argv) == 0
    rows_q, rows_f = read_csv(out_q), read_csv(out_f)
    assert len(rows_q) == len(rows_f) == H
    std = dict(zip(task.inputs, task.scaler.std, strict=True))
    for rq, rf in zip(rows_q, rows_f, strict=True):
        assert rq["date"] == rf["date"] and rq.keys() == rf.keys()
        for c in task.outputs:
            assert abs(float(rq[c]) - float(rf[c])) < 0.05 * std[c] * max(1.0, abs(pf).max())


@needs_quant
def test_a_baseline_has_no_lstm_to_quantize(runs, tmp_path, capsys):
    capsys.readouterr()
    argv = ["quantize", str(runs("dlinear")), "--out", str(tmp_path / "q")]
    assert cli_main(argv) == 2
    assert one_error(capsys).endswith("Forecaster has no LSTM to quantize")
    assert not (tmp_path / "q").exists()


@needs_quant
@pytest.mark.parametrize("mode, how", [("int8", "dequantize"), ("bf16", "")])
def test_a_quantized_forecast_run_exports(runs, mode, how, tmp_path, capsys):
    """``lstmkit export Q``: ONNX Runtime on the int8 (dequantized in the graph) or bf16
    weights equals the export form's eager output (the dequantized model) to 1e-5, and that
    is within the quantization's reach of the quantized model itself."""
    q, out = tmp_path / "q", tmp_path / "model.onnx"
    assert cli_main(["quantize", str(runs("seq2seq")), "--out", str(q), "--mode", mode]) == 0
    args = ["export", str(q), "--out", str(out)] + (["--int8-lstm", how] if how else [])
    capsys.readouterr()
    assert cli_main(args) == 0
    meta = json.loads(metadata_path(out).read_text())
    assert meta["quantization"]["mode"] == mode and meta["forecast"]["horizon"] == H
    task, qmodel, _ = load_trained(q, CPU)
    form = export_forms(qmodel, lookback=L, horizon=H, n_future=task.n_calendar)["model"]
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(4, L, len(task.inputs) + 3, generator=gen)
    fut = torch.randn(4, H, 3, generator=gen)
    with torch.no_grad():
        want, direct = form(x, fut), qmodel(x, fut)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"x": x.numpy(), "future": fut.numpy()})
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-5)
    assert (want - direct).abs().max() < 0.05 * max(1.0, float(direct.abs().max()))


# --------------------------------------------------------------------------- predict model.onnx


@pytest.fixture(scope="module")
def exports(runs, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("exports")
    out = {}
    for name in RUNS:
        task, model, ckpt = load_trained(runs(name), CPU)
        path = root / f"{name}.onnx"
        export_task_model(task, model, ckpt, path)
        out[name] = path
    return out


def torch_free(code: str) -> subprocess.CompletedProcess:
    script = code + "\nassert 'torch' not in sys.modules, 'torch was imported'\n"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-c", "import sys\n" + script],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_the_onnx_predictor_writes_the_torch_paths_csv_without_torch(
    runs, exports, recent, tmp_path
):
    """Every run's forecast CSV from its export, in a process that never imports torch,
    against ``lstmkit predict RUN --input recent.csv --output``: the same columns, times and
    steps; the point forecasts and the Gaussian and quantile-head quantiles to float32
    rounding (the graph against torch, 1e-5 of the scaled units, times the column's std);
    the Student-t quantiles, sampled by numpy there and by torch here, within six standard
    deviations of the difference of two 200-sample quantile estimates,
    :math:`\\sqrt{2 q (1 - q) / n} / f(x_q)` with :math:`f` the t density at the quantile."""
    from scipy import stats

    calls = []
    for name, path in exports.items():
        out = tmp_path / f"{name}-onnx.csv"
        calls.append(f"rc = main([{str(path)!r}, '--input', {str(recent)!r}, '--output', "
                     f"{str(out)!r}])\nassert rc == 0, rc")  # fmt: skip
    done = torch_free("from lstmkit.infer.onnx_predict import main\n" + "\n".join(calls))
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("lstmkit: read 20 rows of") == len(exports), done.stderr
    for name in exports:
        ref = tmp_path / f"{name}-torch.csv"
        argv = ["predict", str(runs(name)), "--input", str(recent), "--output", str(ref)]
        assert cli_main(argv) == 0
        got, want = read_csv(tmp_path / f"{name}-onnx.csv"), read_csv(ref)
        assert list(got[0]) == list(want[0]) and len(got) == len(want) == H
        f = json.loads(metadata_path(exports[name]).read_text())["forecast"]
        std = dict(zip(f["inputs"], f["scaler"]["std"], strict=True))
        mean = dict(zip(f["inputs"], f["scaler"]["mean"], strict=True))
        params = None
        if name == "student-t":  # the parameters, for the sampling error of each quantile
            task, model, _ = load_trained(runs(name), CPU)
            times, values = task._read_recent(str(recent), "recent")
            x, fut, _ = task._window(times, values)
            with torch.no_grad():
                params = model(x)[0].numpy()
        for k, (g, w) in enumerate(zip(got, want, strict=True)):
            assert g["date"] == w["date"] and g["step"] == w["step"] == str(k + 1)
            for col in w:
                if col in ("date", "step"):
                    continue
                c, _, level = col.partition("_q")
                diff = abs(float(g[col]) - float(w[col]))
                if params is None or not level:
                    tol = 1e-5 * (std[c] + abs(float(w[col]) - mean[c]))  # 1e-5 (1 + |z|)
                    assert diff <= tol, (name, col, diff)
                    continue
                q, (_, sigma, nu) = float(level), params[k, 0]
                pdf = stats.t.pdf(stats.t.ppf(q, nu), nu) / sigma
                se = math.sqrt(2 * q * (1 - q) / f["samples"]) / pdf
                assert diff <= 6 * se * std[c], (col, diff, se)


BAD_CASES = {
    "missing-column": lambda rows: [",".join(r.split(",")[:-1]) for r in rows],
    "nan": lambda rows: rows[:5] + [rows[5].rsplit(",", 1)[0] + ",nan"] + rows[6:],
    "few-rows": lambda rows: rows[:6],
    "step": lambda rows: rows[:1] + rows[1::2],
    "timestamp": lambda rows: rows[:3] + ["yesterday," + rows[3].split(",", 1)[1]] + rows[4:],
    "gap": lambda rows: rows[:8] + rows[10:],
    "duplicate": lambda rows: rows[:8] + rows[7:],
    "empty": lambda rows: [],
    "header-only": lambda rows: rows[:1],
}


@pytest.mark.parametrize("case", [*BAD_CASES, "no-file"])
def test_bad_recent_tables_give_the_torch_paths_error(runs, exports, recent, tmp_path, case,
                                                      capsys):  # fmt: skip
    bad = tmp_path / f"{case}.csv"
    if case != "no-file":
        rows = BAD_CASES[case](recent.read_text().splitlines())
        bad.write_text("\n".join(rows) + ("\n" if rows else ""))
    capsys.readouterr()
    assert cli_main(["predict", str(runs("dlinear")), "--input", str(bad)]) == 2
    want = one_error(capsys)
    assert onnx_predict.main([str(exports["dlinear"]), "--input", str(bad)]) == 2
    assert one_error(capsys) == want


def test_a_forecast_export_asks_for_its_table(exports, recent, capsys):
    path = str(exports["dlinear"])
    assert onnx_predict.main([path, "2020-01-01,1,2,3"]) == 2
    assert "reads its recent rows from one table; give --input recent.csv" in one_error(capsys)
    with pytest.raises(Exception, match="give --input recent.csv"):
        onnx_predict.predict_file(path, ["x"])
    assert onnx_predict.takes_table(path)
    rows = onnx_predict.predict_table(path, recent)
    assert [r["step"] for r in rows] == [1, 2, 3]


def test_the_export_of_a_forecast_run_needs_no_task_checkpoint(runs, tmp_path):
    """Run.export's path (export_task_model) on a loaded run: the window comes from the task."""
    task, model, _ = load_trained(runs("gaussian"), CPU)
    result = export_task_model(task, model, SimpleNamespace(path="x"), tmp_path / "m.onnx")
    ins = result.metadata["graphs"]["model"]["inputs"]
    assert ins[0]["shape"] == ["B", L, 6] and ins[1]["shape"] == ["B", H, 3]


def test_lstmkit_predict_reads_a_forecast_exports_recent_table(runs, exports, recent, tmp_path):
    """The command line form, ``lstmkit predict model.onnx --input recent.csv --output``,
    writes what the torch-free predictor writes."""
    path = str(exports["dlinear"])
    cli_out, direct = tmp_path / "cli.csv", tmp_path / "direct.csv"
    assert cli_main(["predict", path, "--input", str(recent), "--output", str(cli_out)]) == 0
    assert onnx_predict.main([path, "--input", str(recent), "--output", str(direct)]) == 0
    assert cli_out.read_text() == direct.read_text()
    assert len(read_csv(cli_out)) == H
