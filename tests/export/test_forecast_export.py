"""The forecast task's Forecaster exported to ONNX (lstmkit.export.tasks.ForecasterExport): the
direct LSTM, the encoder-decoder, channel independence with RevIN, the Gaussian, Student-t and
quantile heads, DLinear and the last value; each file passes onnx.checker, ONNX Runtime's
``params`` equal the PyTorch model's to 1e-5 at batch sizes other than the exported one, and
the metadata's ``forecast`` section says what the run's task holds (the calendar formula
checked against lstmkit.data.timeseries.calendar_features)."""

from __future__ import annotations

import json
from datetime import datetime
from types import SimpleNamespace

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from lstmkit.data.timeseries import calendar_features  # noqa: E402
from lstmkit.export.tasks import EXAMPLE_SIZES, ForecasterExport, export_forms  # noqa: E402
from lstmkit.infer.export import export_task_model, metadata_path  # noqa: E402
from lstmkit.models.forecaster import ForecasterConfig, with_encoder  # noqa: E402
from lstmkit.nn import LSTM  # noqa: E402
from lstmkit.tasks.forecast import ForecastConfig, ForecastTask  # noqa: E402
from tests.data.test_timeseries import write_table  # noqa: E402

TOL = 1e-5
L, H = 12, 3

CASES = {
    "lstm": (dict(model="lstm"), dict(calendar=True)),
    "seq2seq-gaussian": (dict(model="lstm-seq2seq", likelihood="gaussian"), dict(calendar=True)),
    "ci-revin-quantile": (
        dict(model="lstm", channel_independent=True, revin=True, likelihood="quantile"),
        dict(calendar=True),
    ),
    "seq2seq-ci-revin-t": (
        dict(model="lstm-seq2seq", channel_independent=True, revin=True, likelihood="student-t"),
        {},
    ),
    "lstm-covariate-2layers": (
        dict(model="lstm", likelihood="gaussian"),
        dict(targets="a,OT", covariates="b", num_layers=2),
    ),
    "segment-gaussian": (dict(model="lstm", segment=5, likelihood="gaussian"), dict(calendar=True)),
    "segment-ci-revin-quantile-2layers": (
        dict(model="lstm", segment=4, channel_independent=True, revin=True, likelihood="quantile"),
        dict(num_layers=2),
    ),
    "dlinear": (dict(model="dlinear", kernel=5), dict(calendar=True)),
    "last": (dict(model="last"), {}),
}


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    path = tmp_path_factory.mktemp("fc") / "series.csv"
    return write_table(path, 120, cols=("a", "b", "OT"), value=wave)


def wave(r: int, j: int) -> float:
    return float(np.sin(r / 4 + j) * (j + 1) + 0.02 * r)


def build(table, name: str):
    model_kw, task_kw = CASES[name]
    task_kw = dict(task_kw)
    layers = task_kw.pop("num_layers", 1)
    cfg = ForecastConfig(data=str(table), lookback=L, horizon=H, **{"targets": "all", **task_kw})
    mcfg = with_encoder(ForecasterConfig(**model_kw), hidden_size=6, num_layers=layers)
    task = ForecastTask(cfg, mcfg)
    torch.manual_seed(0)
    model = task.build_model().eval()
    with torch.no_grad():  # RevIN's affine away from identity, so that its inverse is tested
        for name_, p in model.named_parameters():
            if name_ in ("gamma", "beta"):
                p.add_(torch.randn_like(p) * 0.3)
    return task, model


def inputs(task, B: int, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, L, len(task.inputs) + task.n_calendar, generator=gen)
    fut = torch.randn(B, H, task.n_calendar, generator=gen) if task.n_calendar else None
    return x, fut


@pytest.mark.parametrize("name", list(CASES))
def test_onnx_runtime_gives_the_models_params(table, tmp_path, name):
    task, model = build(table, name)
    out = tmp_path / "model.onnx"
    result = export_task_model(task, model, SimpleNamespace(path=tmp_path / "run"), out)
    onnx.checker.check_model(str(out))
    proto = onnx.load(str(out))
    ops = {n.op_type for n in proto.graph.node}
    if CASES[name][0]["model"].startswith("lstm"):
        assert "LSTM" in ops, ops  # the native node, not lstmkit's custom op
    assert not [n.domain for n in proto.graph.node if n.domain.startswith("lstmkit")]
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    graph = result.metadata["graphs"]["model"]
    names = [p["name"] for p in graph["inputs"]]
    assert names == (["x", "future"] if task.n_calendar else ["x"])
    assert [i.name for i in session.get_inputs()] == names
    C, P = len(task.outputs), task.model_cfg.n_params
    assert graph["outputs"] == [{"name": "params", "dtype": "float32", "shape": ["B", H, C, P]}]
    for B in (1, 5):
        assert B != EXAMPLE_SIZES["B"]
        x, fut = inputs(task, B)
        with torch.no_grad():
            want = model(x, fut).numpy()
        feeds = {"x": x.numpy(), **({"future": fut.numpy()} if fut is not None else {})}
        (got,) = session.run(None, feeds)
        assert got.shape == (B, H, C, P)
        np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL)


def test_the_metadata_says_what_the_task_holds(table, tmp_path):
    task, model = build(table, "ci-revin-quantile")
    out = tmp_path / "model.onnx"
    export_task_model(task, model, SimpleNamespace(path=tmp_path / "run"), out)
    meta = json.loads(metadata_path(out).read_text())
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(props["lstmkit"]) == meta and meta["task"] == "forecast"
    f = meta["forecast"]
    assert (f["lookback"], f["horizon"]) == (L, H)
    assert f["outputs"] == f["inputs"] == ["a", "b", "OT"] == task.outputs
    np.testing.assert_array_equal(f["scaler"]["mean"], task.scaler.mean)
    np.testing.assert_array_equal(f["scaler"]["std"], task.scaler.std)
    assert f["time_column"] == "date" and f["freq_s"] == 3600 and f["fill"] == "none"
    assert f["likelihood"] == "quantile" and f["levels"] == [0.1, 0.5, 0.9]
    assert f["params"] == ["q0.1", "q0.5", "q0.9"] and "nearest 0.5" in f["point_rule"]
    assert f["calendar"]["enabled"] and f["calendar"]["features"] == ["hour", "weekday", "month"]
    assert meta["state"]["hidden_size"] == 6 and meta["state"]["cell"] == "lstm"


def test_the_calendar_formula_of_the_metadata_is_the_tasks():
    """A consumer computing the features from the metadata's formula gets the task's."""
    from lstmkit.infer.export import CALENDAR

    assert (
        "hour / 23 - 0.5, weekday / 6 - 0.5 (Monday = 0), month / 11 - 0.5 (January = 0)"
        in (CALENDAR["formula"])
    )
    stamps = ["2016-07-01 00:00:00", "2021-01-03 23:00:00", "1999-12-31 13:00:00"]
    times = np.array([np.datetime64(s.replace(" ", "T"), "s") for s in stamps])
    by_formula = [
        [d.hour / 23 - 0.5, d.weekday() / 6 - 0.5, (d.month - 1) / 11 - 0.5]
        for d in (datetime.fromisoformat(s) for s in stamps)
    ]
    np.testing.assert_allclose(calendar_features(times), by_formula, rtol=0, atol=1e-12)


def test_the_form_leaves_the_model_as_it_is(table):
    """The export form holds a copy whose LSTMs are wrapped; the model keeps its own."""
    task, model = build(table, "seq2seq-gaussian")
    form = export_forms(model, lookback=L, horizon=H, n_future=task.n_calendar)["model"]
    assert isinstance(form, ForecasterExport)
    assert isinstance(model.net.encoder, LSTM) and isinstance(model.net.decoder, LSTM)
    assert not isinstance(form.model.net.encoder, LSTM)
    x, fut = inputs(task, 2)
    with torch.no_grad():
        torch.testing.assert_close(form(x, fut), model(x, fut), rtol=TOL, atol=TOL)
    with pytest.raises(Exception, match="lookback and horizon"):
        export_forms(model)
