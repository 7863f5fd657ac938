"""The ONNX predictor without torch (issue 18, part 3): ``lstmkit.infer.onnx_predict`` and the
tokenizer, prompt and audio code it reads import without torch, which needs ``import lstmkit``
to import ``lstmkit.nn`` on first use only (src/lstmkit/__init__.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_the_predictor_and_what_it_reads_import_without_torch(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    code = (
        "import sys\n"
        "import lstmkit.data.tokenize, lstmkit.data.prompt, lstmkit.data.audio\n"
        "import lstmkit.data.bitext, lstmkit.data.corpus_splits\n"
        "from lstmkit.infer.onnx_predict import main\n"
        f"rc = main([{str(junk)!r}, 'x'])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "sys.exit(rc)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 2, done.stderr  # the junk file: one line, status 2, no torch
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a readable ONNX model" in lines[0], lines


def test_the_lazy_package_names_still_resolve():
    import lstmkit
    from lstmkit import GATE_ORDER, LSTM
    from lstmkit.data import adding_problem

    assert LSTM is lstmkit.nn.LSTM and GATE_ORDER == ("i", "f", "g", "o")
    assert callable(adding_problem) and "adding_problem" in lstmkit.data.__all__
    with pytest.raises(AttributeError):
        lstmkit.no_such_name  # noqa: B018


def test_an_exported_classifier_predicts_without_torch(tmp_path):
    """The sentiment fixture's export, run in a process that never imports torch."""
    from lstmkit.infer.export import export_task_model
    from lstmkit.infer.load import load_trained
    from lstmkit.infer.predict import predict_items

    pytest.importorskip("onnxruntime")
    torch = pytest.importorskip("torch")
    run = ROOT / "tests" / "fixtures" / "checkpoints" / "sentiment"
    task, model, ckpt = load_trained(run, torch.device("cpu"))
    out = tmp_path / "model.onnx"
    export_task_model(task, model, ckpt, out)
    code = (
        "import sys\n"
        "from lstmkit.infer.onnx_predict import main\n"
        f"rc = main([{str(out)!r}, 'good fine movie', 'bad awful film'])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "sys.exit(rc)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    want = predict_items(task, model, ["good fine movie", "bad awful film"], torch.device("cpu"))
    assert [r["label"] for r in rows] == [w["label"] for w in want]
    for r, w in zip(rows, want, strict=True):
        assert r["probabilities"] == pytest.approx(w["probabilities"], abs=1.01e-4)
