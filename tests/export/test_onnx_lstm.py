"""lstmkit.export.onnx_graph (the Scan path): a bare lstmkit.LSTM exported to ONNX equals its
eval-mode output in ONNX Runtime at batch and time sizes other than the exported example, for
a covering set of variants; each file passes onnx.checker (full check); error paths are
one ExportError line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import lstmkit  # noqa: E402

# This file checks the Scan path (onnx_lstm + onnx_graph) on its own, every variant through
# it; lstmkit.export (graph.py) routes the variants the native node expresses elsewhere.
from lstmkit.export.onnx_graph import export_model, to_onnx  # noqa: E402
from lstmkit.export.onnx_lstm import ExportError, lstm_forward  # noqa: E402

ATOL = 1e-5
I, H = 3, 5

# A covering set of (options, layers, bidirectional): every variant once, uni and bi, 1-3
# layers, with and without projection; all are run with ragged lengths.
CASES = {
    "vanilla-bi-2": (dict(), 2, True),
    "peephole": (dict(peephole=True), 1, False),
    "coupled-peephole-bi": (dict(coupled=True, peephole=True), 1, True),
    "no-forget-gate": (dict(forget_gate=False), 1, False),
    "forget-bias-batch-first": (dict(forget_bias=1.0, batch_first=True), 1, False),
    "layer-norm-bi-3": (dict(layer_norm=True), 3, True),
    "projection-2": (dict(proj_size=2), 2, False),
    "ln-proj-bi": (dict(layer_norm=True, proj_size=3), 1, True),
    "zoneout-rd-wd": (
        dict(zoneout_h=0.3, zoneout_c=0.2, recurrent_dropout=0.25, weight_drop=0.5),
        2,
        False,
    ),
}


def _run(path, feeds):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {k: v.numpy() for k, v in feeds.items()})


@pytest.mark.parametrize("case", list(CASES))
def test_onnx_runtime_equals_eval(case, tmp_path):
    opts, layers, bi = CASES[case]
    torch.manual_seed(0)
    m = lstmkit.LSTM(I, H, num_layers=layers, bidirectional=bi, **opts).eval()
    with torch.no_grad():  # non-trivial variant parameters (layer norm starts at 1 and 0)
        for name, p in m.named_parameters():
            if name.startswith("ln_"):
                p.uniform_(0.5, 1.5)
    bf = m.batch_first
    path = tmp_path / "m.onnx"
    proto = to_onnx(m, torch.randn(2, 4, I) if bf else torch.randn(4, 2, I), path, lengths=True)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    ops = {n.op_type for n in proto.graph.node}
    assert "Scan" in ops and all(n.domain in ("", "ai.onnx") for n in proto.graph.node)
    B, T = 3, 6  # not the exported example's (2, 4)
    LD, P = layers * (2 if bi else 1), m.proj_size or H
    x = torch.randn(B, T, I) if bf else torch.randn(T, B, I)
    h0, c0 = torch.randn(LD, B, P), torch.randn(LD, B, H)
    lengths = torch.tensor([6, 2, 4])
    with torch.no_grad():
        y, (h_n, c_n) = lstm_forward(m, x, (h0, c0), lengths)
    got = _run(path, {"x": x, "h0": h0, "c0": c0, "lengths": lengths})
    for name, want, have in zip(("y", "h_n", "c_n"), (y, h_n, c_n), got, strict=True):
        np.testing.assert_allclose(have, want.numpy(), atol=ATOL, rtol=0, err_msg=name)


def test_lstm_forward_eager_is_packing():
    """Eager lstm_forward is the packed call: zeros past each length, state at the last step."""
    torch.manual_seed(1)
    m = lstmkit.LSTM(I, H, bidirectional=True, peephole=True).eval()
    x, lengths = torch.randn(5, 2, I), torch.tensor([5, 3])
    with torch.no_grad():
        y, (h_n, _) = lstm_forward(m, x, None, lengths)
        y1, (h1, _) = m(x[:3, 1:2])
    assert torch.all(y[3:, 1] == 0)
    torch.testing.assert_close(y[:3, 1:2], y1)
    torch.testing.assert_close(h_n[:, 1:2], h1)


def test_streaming_without_lengths_and_torch_lstm(tmp_path):
    """A plain torch.nn.LSTM without lengths; two T=1 calls carry the state like one T=2 call."""
    torch.manual_seed(2)
    m = torch.nn.LSTM(I, H, num_layers=2).eval()
    path = tmp_path / "t.onnx"
    to_onnx(m, torch.randn(3, 2, I), path)
    x, h0, c0 = torch.randn(2, 1, I), torch.zeros(2, 1, H), torch.zeros(2, 1, H)
    with torch.no_grad():
        y, (h_n, c_n) = m(x, (h0, c0))
    y0, h, c = _run(path, {"x": x[:1], "h0": h0, "c0": c0})
    y1, h, c = _run(path, {"x": x[1:], "h0": torch.from_numpy(h), "c0": torch.from_numpy(c)})
    np.testing.assert_allclose(np.concatenate([y0, y1]), y.numpy(), atol=ATOL, rtol=0)
    np.testing.assert_allclose(h, h_n.numpy(), atol=ATOL, rtol=0)
    np.testing.assert_allclose(c, c_n.numpy(), atol=ATOL, rtol=0)


class _Tagger(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(7, I)
        self.lstm = lstmkit.LSTM(I, H, batch_first=True, layer_norm=True)
        self.out = torch.nn.Linear(H, 4)

    def forward(self, tokens, lengths):
        y, _ = lstm_forward(self.lstm, self.emb(tokens), None, lengths)
        return self.out(y).log_softmax(-1)


def test_export_model_wrapper_and_metadata(tmp_path):
    torch.manual_seed(3)
    model = _Tagger().eval()
    B, T = torch.export.Dim("batch"), torch.export.Dim("time")
    path = tmp_path / "w.onnx"
    export_model(
        model,
        (torch.randint(0, 7, (2, 4)), torch.tensor([4, 2])),
        path,
        input_names=["tokens", "lengths"],
        output_names=["logp"],
        dynamic_shapes=({0: B, 1: T}, {0: B}),
        metadata={"task": "tagger", "labels": "a,b,c,d"},
    )
    proto = onnx.load(path)
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["task"] == "tagger" and props["labels"] == "a,b,c,d"
    tokens, lengths = torch.randint(0, 7, (3, 5)), torch.tensor([5, 1, 3])
    with torch.no_grad():
        want = model(tokens, lengths)
    (got,) = _run(path, {"tokens": tokens, "lengths": lengths})
    np.testing.assert_allclose(got, want.numpy(), atol=ATOL, rtol=0)


def test_errors(tmp_path):
    m = lstmkit.LSTM(I, H)
    with pytest.raises(ExportError, match="train mode.*eval"):
        to_onnx(m, torch.randn(2, 1, I), tmp_path / "a.onnx")
    with pytest.raises(ExportError, match=r"opset=13 .*opset >= 18"):
        to_onnx(m.eval(), torch.randn(2, 1, I), tmp_path / "a.onnx", opset=13)
    with pytest.raises(ExportError, match="batched"):
        to_onnx(m, torch.randn(2, I), tmp_path / "a.onnx")
    with pytest.raises(ExportError, match="takes lstmkit.LSTM or torch.nn.LSTM, got GRU"):
        lstm_forward(torch.nn.GRU(I, H), torch.randn(2, 1, I))
    assert not (tmp_path / "a.onnx").exists()
