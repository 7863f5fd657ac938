"""``lstmkit export`` and ``Run.export`` (issue 18, part 3): the verb writes the ONNX file and
its metadata beside it, and bad input is one line, status 2, with nothing written or replaced:
an unsupported format or opset, an existing --out without --overwrite, a folder that is not a
run, no --out (``lstmkit predict`` on a file that is not an lstmkit export:
tests/infer/test_onnx_predict.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

import lstmkit  # noqa: E402
from lstmkit.cli.main import cli_main  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoints"
ADDING = str(FIXTURES / "adding")


def one_error(capsys) -> str:
    lines = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("lstmkit: error: "), lines
    return lines[0]


@pytest.fixture(scope="module")
def adding_export(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "adding.onnx"
    assert cli_main(["export", ADDING, "--out", str(out)]) == 0
    return out


def test_export_writes_the_model_and_its_metadata(adding_export, capsys):
    meta_file = adding_export.with_name("adding.onnx.json")
    assert adding_export.is_file() and meta_file.is_file()
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    assert meta["task"] == "adding" and meta["lstmkit_version"] == lstmkit.__version__
    assert meta["graphs"]["model"]["inputs"] == [
        {"name": "x", "dtype": "float32", "shape": ["B", "T", 2]},
        {"name": "lengths", "dtype": "int64", "shape": ["B"]},
    ]
    assert meta["state"] == {
        "cell": "lstm",
        "num_layers": 1,
        "directions": 1,
        "hidden_size": 4,
        "proj_size": 0,
    }
    onnx.checker.check_model(str(adding_export), full_check=True)
    # what `lstmkit predict RUN` prints for the same inputs
    inputs = ["0.3 0.9* 0.1 0.5* 0.2", "0.5* 0.1 0.2 0.7*"]
    capsys.readouterr()
    assert cli_main(["predict", ADDING, *inputs]) == 0
    want = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert cli_main(["predict", str(adding_export), *inputs]) == 0
    got = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    for g, w in zip(got, want, strict=True):
        assert g["input"] == w["input"] and g["correct"] == w["correct"]
        assert g["target"] == w["target"]
        assert g["prediction"] == pytest.approx(w["prediction"], abs=1e-5)


def test_an_existing_out_is_kept_without_overwrite(adding_export, capsys):
    before = adding_export.read_bytes()
    capsys.readouterr()
    assert cli_main(["export", ADDING, "--out", str(adding_export)]) == 2
    line = one_error(capsys)
    assert str(adding_export) in line and "--overwrite" in line
    assert adding_export.read_bytes() == before


def test_overwrite_replaces_and_run_export_writes_the_same_files(tmp_path):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"old")
    assert cli_main(["export", ADDING, "--out", str(out), "--overwrite"]) == 0
    assert out.read_bytes() != b"old"
    run = lstmkit.load(ADDING, device="cpu")
    paths = run.export(tmp_path / "api.onnx")
    assert [p.name for p in paths] == ["api.onnx", "api.onnx.json"]
    a, b = (json.loads(p.with_name(p.name + ".json").read_text()) for p in (out, paths[0]))
    assert a["graphs"]["model"]["inputs"] == b["graphs"]["model"]["inputs"]
    assert a["task_config"] == b["task_config"]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--format", "tflite"], "--format"),
        (["--opset", "-1"], "--opset"),
        (["--opset", "3"], "opset"),
    ],
)
def test_an_unsupported_format_or_opset_is_one_line(args, needle, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    capsys.readouterr()
    assert cli_main(["export", ADDING, "--out", str(out), *args]) == 2
    assert needle in one_error(capsys)
    assert not out.exists() and not out.with_name("m.onnx.json").exists()


def test_bad_runs_and_outs_are_one_line(tmp_path, capsys):
    capsys.readouterr()
    assert cli_main(["export", str(tmp_path), "--out", str(tmp_path / "m.onnx")]) == 2
    assert str(tmp_path) in one_error(capsys)
    assert cli_main(["export", ADDING]) == 2
    assert "--out" in one_error(capsys)
    assert cli_main(["export", ADDING, "--out", str(tmp_path / "no" / "m.onnx")]) == 2
    assert "does not exist" in one_error(capsys)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("mode, how", [("int8", "dynamic"), ("int8", "dequantize"), ("bf16", "")])
def test_a_quantized_run_exports_with_its_weights_quantized(mode, how, tmp_path, capsys):
    """``lstmkit quantize RUN --out Q`` then ``lstmkit export Q``: the file holds int8 (bf16)
    LSTM weights, DynamicQuantizeLSTM or DequantizeLinear/Cast nodes, the metadata says the
    mode, and ``lstmkit predict model.onnx`` is within the quantization's reach of ``lstmkit
    predict Q`` (both are the float run's model with rounded weights: 1e-2 on these targets,
    whose scale is 1)."""
    q, out = tmp_path / "q", tmp_path / "q.onnx"
    assert cli_main(["quantize", ADDING, "--out", str(q), "--mode", mode]) == 0
    args = ["export", str(q), "--out", str(out)] + (["--int8-lstm", how] if how else [])
    assert cli_main(args) == 0
    meta = json.loads(out.with_name("q.onnx.json").read_text(encoding="utf-8"))
    assert meta["quantization"]["mode"] == mode and meta["state"]["cell"] == "lstm"
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto, full_check=True)
    ops = {n.op_type for n in proto.graph.node}
    want_op = {"dynamic": "DynamicQuantizeLSTM", "dequantize": "DequantizeLinear", "": "Cast"}
    assert want_op[how] in ops
    stored = onnx.TensorProto.INT8 if mode == "int8" else onnx.TensorProto.BFLOAT16
    assert any(t.data_type == stored for t in proto.graph.initializer)
    inputs = ["0.3 0.9* 0.1 0.5* 0.2", "0.5* 0.1 0.2 0.7*"]
    capsys.readouterr()
    assert cli_main(["predict", str(q), *inputs]) == 0
    want = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert cli_main(["predict", str(out), *inputs]) == 0
    got = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    for g, w in zip(got, want, strict=True):
        assert g["target"] == w["target"]
        assert g["prediction"] == pytest.approx(w["prediction"], abs=1e-2)


def test_an_unknown_int8_lstm_is_one_line(tmp_path, capsys):
    capsys.readouterr()
    out = tmp_path / "m.onnx"
    assert cli_main(["export", ADDING, "--out", str(out), "--int8-lstm", "fast"]) == 2
    assert "--int8-lstm" in one_error(capsys)
    assert not out.exists()


def test_an_out_name_too_long_is_one_line(tmp_path, capsys):
    for out in (tmp_path / ("m" * 300), tmp_path / ("m" * 252)):  # the file, its .json beside
        capsys.readouterr()
        assert cli_main(["export", str(FIXTURES / "adding"), "--out", str(out)]) == 2
        err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
        assert len(err) == 1 and "File name too long" in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_out_never_overwrites_the_source_runs_checkpoint_files(tmp_path, capsys):
    """--out RUN/best/model.json --overwrite replaced the checkpoint's model.json (fuzz)."""
    import shutil

    run = tmp_path / "run"  # a run folder: best/ and last/ checkpoints
    for name in ("best", "last"):
        shutil.copytree(FIXTURES / "adding", run / name)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    for out in (run / "best" / "model.json", run / "last" / "model.onnx"):
        capsys.readouterr()
        assert cli_main(["export", str(run), "--out", str(out), "--overwrite"]) == 2
        err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
        assert len(err) == 1 and "inside the checkpoint" in err[0], err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    assert cli_main(["export", str(run), "--out", str(run / "model.onnx")]) == 0  # beside: fine
