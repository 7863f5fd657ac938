"""``lstmkit predict model.onnx`` without torch (issue 18, part 3): the ONNX predictor and the
tokenizer, prompt and audio code it reads import without torch; a file that is not an lstmkit
export is one line, status 2; its numpy CTC decoders are lstmkit's. (The exports themselves,
and the predictions they give against ``lstmkit predict RUN``: tests/export/test_tasks.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lstmkit.cli.main import cli_main
from lstmkit.infer import onnx_predict


def one_error(capsys) -> str:
    lines = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("lstmkit: error: "), lines
    return lines[0]


def test_predict_on_a_file_that_is_not_an_lstmkit_export_is_one_line(tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    junk = tmp_path / "junk.onnx"
    junk.write_bytes(np.random.default_rng(0).bytes(64))
    capsys.readouterr()
    assert cli_main(["predict", str(junk), "x"]) == 2
    assert "not a readable ONNX model" in one_error(capsys)
    node = helper.make_node("Identity", ["a"], ["b"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1])],
    )
    other = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph), str(other))
    assert cli_main(["predict", str(other), "x"]) == 2
    line = one_error(capsys)
    assert "not an lstmkit export" in line and "lstmkit export RUN" in line
    assert cli_main(["predict", str(tmp_path / "missing.onnx"), "x"]) == 2
    assert "not found" in one_error(capsys)
    # the read options of a run's files are not an export's
    assert cli_main(["predict", str(other), "x", "--text-column", "t"]) == 2
    assert "--text-column" in one_error(capsys)


def test_the_numpy_ctc_decoders_are_lstmkits():
    from lstmkit.models.speech import ctc_beam_search, ctc_greedy

    rng = np.random.default_rng(0)
    for k in range(20):
        lp = torch.randn(12, 5, generator=torch.Generator().manual_seed(k)).log_softmax(-1)
        n = int(rng.integers(1, 13))
        assert onnx_predict.ctc_greedy(lp.numpy(), n) == ctc_greedy(lp, n)
        assert onnx_predict.ctc_beam_search(lp.numpy(), 4, n) == ctc_beam_search(lp, 4, n)


def test_max_lengths_is_lstmkits():
    from lstmkit.models.seq2seq import max_lengths

    src_len = np.array([1, 3, 7, 10, 33])
    for ratio in (0.7, 1.5, 2.0, 1.1):
        want = max_lengths(torch.from_numpy(src_len), ratio).numpy()
        assert (onnx_predict.max_lengths(src_len, ratio) == want).all()
