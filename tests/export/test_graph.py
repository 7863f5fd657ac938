"""lstmkit.export.graph (issue 18, part 2): lstm_forward equals the module's packed call in
eager; the exported graphs run in ONNX Runtime equal to lstmkit's eval output to 1e-5 at batch
and time sizes other than the exported example: native ONNX LSTM nodes (layout 0) for the
variants the operator expresses, the Scan bodies of lstmkit.export.onnx_graph for layer norm,
projection and zoneout; onnx.checker passes; train mode and bad opsets are one-line
ExportErrors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

import lstmkit  # noqa: E402

# graph.py directly: lstmkit.export may re-export another implementation (see the report)
from lstmkit.export.graph import ExportError, export_model, lstm_forward, to_onnx  # noqa: E402
from lstmkit.utils.errors import UserError  # noqa: E402

TOL = 1e-5
I, H = 3, 5


def packed_call(m, x, lengths, hx=None):
    """The module's own packed semantics: the reference every export form must equal."""
    with torch.no_grad():
        if lengths is None:
            y, (h, c) = m(x, hx)
            return y, h, c
        packed = pack_padded_sequence(x, lengths, batch_first=m.batch_first, enforce_sorted=False)
        y, (h, c) = m(packed, hx)
        y, _ = pad_packed_sequence(
            y, batch_first=m.batch_first, total_length=x.shape[1 if m.batch_first else 0]
        )
        return y, h, c


CASES = {
    # name: (constructor kwargs, layers, bidirectional, batch_first): a covering set
    "vanilla-2-bi": ({}, 2, True, True),
    "forget_bias-weight_drop-2-uni": ({"forget_bias": 1.0, "weight_drop": 0.5}, 2, False, True),
    "coupled-peephole-2-bi": ({"coupled": True, "peephole": True}, 2, True, True),
    "no-forget-gate-peephole-2-uni": ({"forget_gate": False, "peephole": True}, 2, False, True),
    "no-bias-recurrent_dropout-3-bi-tmajor": (
        {"bias": False, "recurrent_dropout": 0.3},
        3,
        True,
        False,
    ),
}
SCAN_CASES = {  # what the native node does not express: onnx_graph's Scan
    "layer_norm-2-bi": ({"layer_norm": True}, 2, True, True),
    "proj-zoneout-peephole-2-uni": (
        {"proj_size": 2, "zoneout_h": 0.2, "zoneout_c": 0.3, "peephole": True},
        2,
        False,
        False,
    ),
}


def build(kw, layers, bi, bf, seed=0):
    torch.manual_seed(seed)
    m = lstmkit.LSTM(I, H, num_layers=layers, bidirectional=bi, batch_first=bf, **kw)
    with torch.no_grad():  # peepholes start at zero: make them matter
        for name, p in m.named_parameters():
            if name.startswith("weight_c"):
                p.normal_()
    return m.eval()


def inputs(bf, B, T, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((B, T, I) if bf else (T, B, I), generator=g)
    lengths = torch.tensor([max(1, T - 2 * k) for k in range(B)])[torch.randperm(B, generator=g)]
    return x, lengths


@pytest.mark.parametrize("case", list(CASES) + list(SCAN_CASES))
def test_lstm_forward_equals_the_packed_module_in_eager(case):
    kw, layers, bi, bf = {**CASES, **SCAN_CASES}[case]
    m = build(kw, layers, bi, bf)
    x, lengths = inputs(bf, 4, 6)
    D = 2 if bi else 1
    hx = (torch.randn(layers * D, 4, m.proj_size or H), torch.randn(layers * D, 4, H))
    for lens in (lengths, None):
        want = packed_call(m, x, lens, hx)
        with torch.no_grad():
            y, (h, c) = lstm_forward(m, x, hx, lens)
        for got, ref in zip((y, h, c), want, strict=True):
            torch.testing.assert_close(got, ref, atol=TOL, rtol=0)


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("case", list(CASES) + list(SCAN_CASES))
def test_onnx_runtime_equals_lstmkit_at_other_sizes(case, tmp_path):
    kw, layers, bi, bf = {**CASES, **SCAN_CASES}[case]
    native = case in CASES
    m = build(kw, layers, bi, bf)
    example = inputs(bf, 3, 7)[0]
    path = tmp_path / "lstm.onnx"
    proto = to_onnx(m, example, path, lengths=True, metadata={"case": case})
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    assert {p.key: p.value for p in proto.metadata_props}["case"] == case
    lstm_nodes = [n for n in proto.graph.node if n.op_type == "LSTM"]
    scans = [n for n in proto.graph.node if n.op_type in ("Scan", "Loop")]
    if not native:
        assert scans and not lstm_nodes
    else:
        assert len(lstm_nodes) == layers and not scans  # one node per layer, both directions
    for n in lstm_nodes:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        assert attrs.get("layout", 0) == 0
        assert attrs["direction"] == (b"bidirectional" if bi else b"forward")
    sess = session(path)
    D = 2 if bi else 1
    for B, T in ((5, 4), (1, 9), (2, 1)):
        x, lengths = inputs(bf, B, T, seed=B + T)
        hx = (torch.randn(layers * D, B, m.proj_size or H), torch.randn(layers * D, B, H))
        want = packed_call(m, x, lengths, hx)
        feed = {
            "x": x.numpy(),
            "h0": hx[0].numpy(),
            "c0": hx[1].numpy(),
            "lengths": lengths.numpy(),
        }
        got = sess.run(None, feed)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w.numpy(), atol=TOL, rtol=0)


def test_torch_nn_lstm_and_full_length_streaming(tmp_path):
    """A plain torch.nn.LSTM exports too; without lengths the graph streams: T = 1 calls with
    the state carried equal one long call."""
    torch.manual_seed(0)
    m = torch.nn.LSTM(I, H, num_layers=2, batch_first=True).eval()
    to_onnx(m, torch.randn(3, 7, I), tmp_path / "t.onnx")
    sess = session(tmp_path / "t.onnx")
    x = torch.randn(2, 5, I)
    with torch.no_grad():
        y, (h, c) = m(x)
    h_s = c_s = np.zeros((2, 2, H), np.float32)
    ys = []
    for t in range(5):
        y_t, h_s, c_s = sess.run(None, {"x": x[:, t : t + 1].numpy(), "h0": h_s, "c0": c_s})
        ys.append(y_t)
    np.testing.assert_allclose(np.concatenate(ys, 1), y.numpy(), atol=TOL, rtol=0)
    np.testing.assert_allclose(h_s, h.numpy(), atol=TOL, rtol=0)
    np.testing.assert_allclose(c_s, c.numpy(), atol=TOL, rtol=0)


class Tagger(torch.nn.Module):
    """An ordinary wrapper: embedding, lstm_forward with lengths, linear head."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(11, I)
        self.lstm = lstmkit.LSTM(I, H, bidirectional=True, batch_first=True)
        self.head = torch.nn.Linear(2 * H, 2)

    def forward(self, tokens, lengths):
        y, _ = lstm_forward(self.lstm, self.emb(tokens), None, lengths)
        return self.head(y).log_softmax(-1)


def test_export_model_with_dynamic_axes(tmp_path):
    torch.manual_seed(0)
    model = Tagger().eval()
    tokens, lengths = torch.randint(0, 11, (3, 6)), torch.tensor([6, 4, 2])
    with torch.no_grad():
        export_model(
            model,
            (tokens, lengths),
            tmp_path / "tagger.onnx",
            input_names=["tokens", "lengths"],
            output_names=["log_probs"],
            dynamic_axes={"tokens": {0: "B", 1: "T"}, "lengths": {0: "B"}},
        )
        tokens, lengths = torch.randint(0, 11, (4, 8)), torch.tensor([3, 8, 1, 5])
        want = model(tokens, lengths)
    (got,) = session(tmp_path / "tagger.onnx").run(
        None, {"tokens": tokens.numpy(), "lengths": lengths.numpy()}
    )
    np.testing.assert_allclose(got, want.numpy(), atol=TOL, rtol=0)


def test_train_mode_and_bad_opset_are_refused(tmp_path):
    m = lstmkit.LSTM(I, H, batch_first=True)
    with pytest.raises(ExportError, match="train mode") as e:
        to_onnx(m, torch.randn(2, 3, I), tmp_path / "x.onnx")
    assert "\n" not in str(e.value) and isinstance(e.value, UserError)
    with pytest.raises(ExportError, match="train mode"):
        export_model(
            Tagger(),
            (torch.zeros(2, 3, dtype=torch.long), torch.tensor([3, 2])),
            tmp_path / "x.onnx",
            input_names=["t", "l"],
            output_names=["y"],
        )
    with pytest.raises(ExportError, match="takes an lstmkit.LSTM or torch.nn.LSTM, got GRU"):
        to_onnx(torch.nn.GRU(I, H).eval(), torch.randn(3, 2, I), tmp_path / "x.onnx")
    for bad in (7, 99, "18"):
        with pytest.raises(ExportError, match="opset"):
            to_onnx(m.eval(), torch.randn(2, 3, I), tmp_path / "x.onnx", opset=bad)
    assert not (tmp_path / "x.onnx").exists()
