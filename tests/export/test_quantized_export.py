r"""ONNX export of quantized LSTMs (issue 19, last item; lstmkit.export.quantized).

- The dequantize-in-graph forms (int8 + ``DequantizeLinear`` per axis, bf16 + ``Cast``; native
  ``LSTM`` node or ``Scan``) run in ONNX Runtime equal to the QuantizedLSTM's dequantized float
  model (:func:`lstmkit.nn.quantized.dequantized`) to 1e-5, with ragged lengths, at sizes other
  than the exported example; the file holds the weights quantized.
- ``com.microsoft::DynamicQuantizeLSTM`` (int8 compute) is compared with two references:
  an emulation of what ONNX Runtime computes (uint8 asymmetric per-tensor activations, exact
  integer products; batch 1, where ORT never splits a batch between threads) to 1e-4, which
  is far tighter than its distance from the float model; and the dequantized float model,
  within an error bound derived step by step along the float trajectory (below).
- The file is < 0.35 (int8) / < 0.6 (bf16) the size of the float export when weights
  dominate; onnx.checker passes; the metadata says the mode; a quantized task model exports,
  and ``lstmkit predict model.onnx`` gives the float model's labels on the fixture inputs.

The bound for DynamicQuantizeLSTM vs the float LSTM of the same (dequantized) weights: ORT
rounds each activation to a uint8 grid of step :math:`a` (error :math:`\le a/2`), so a gate
pre-activation :math:`\sum_k x_k W_{jk}` is off by at most
:math:`\varepsilon_j = \tfrac{a_x}{2}\|W_j\|_1 + \sum_k |R_{jk}|(e^h_k + \tfrac{a_h}{2})`, with
:math:`e^h` the bound on ORT's own error in :math:`h_{t-1}` and :math:`a_h` computed from the
range of ORT's :math:`\hat h` (at most the float range widened by :math:`\max e^h`). A gate
moves by at most :math:`\delta(z, \varepsilon) = \varepsilon\, \phi'(\max(0, |z| -
\varepsilon))` (mean value theorem; :math:`\phi'` is largest nearest 0), so with
:math:`\delta_i, \delta_f, \delta_g, \delta_o` those of the float pre-activations:

.. math::
    e^c_t \le \min(1, f + \delta_f)\, e^c_{t-1} + \delta_f |c_{t-1}|
        + \min(1, i + \delta_i)\, \delta_g + \delta_i |g|,\qquad
    e^h_t \le \min(1, o + \delta_o)\, \delta_{\tanh}(c_t, e^c_t) + \delta_o |\tanh c_t|

(``i, f, g, o, c`` the float reference's; from :math:`\hat f \hat c - f c = \hat f(\hat c -
c) + (\hat f - f) c` and the like). Every step is an inequality, so the bound holds whatever
ORT's thread split of the batch (a split quantizes fewer rows: a smaller step).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

import lstmkit  # noqa: E402
from lstmkit.export import ExportError, to_onnx  # noqa: E402
from lstmkit.export.graph import lstm_forward  # noqa: E402
from lstmkit.kernels.cpu import quant  # noqa: E402
from lstmkit.nn.quantized import QuantizedLSTM, dequantized  # noqa: E402

if not quant.is_available():
    pytest.skip(f"quantized CPU kernel unavailable: {quant.build_error()}", allow_module_level=True)

TOL = 1e-5  # dequantize-in-graph vs the dequantized float model: float32 rounding only
EMULATION_TOL = 1e-4  # ORT vs its emulation: float32 order of sums, MLAS's sigmoid/tanh
I, H = 3, 6


def build(kw, layers, bi, mode, seed=0):
    torch.manual_seed(seed)
    m = lstmkit.LSTM(I, H, num_layers=layers, bidirectional=bi, batch_first=True, **kw)
    with torch.no_grad():  # variant parameters start at 0 / 1: make them matter
        for name, p in m.named_parameters():
            if name.startswith("weight_c"):
                p.normal_()
            elif name.startswith("ln_"):
                p.uniform_(0.5, 1.5)
    return QuantizedLSTM.from_float(m.eval(), mode)


def inputs(q, B, T, seed=1):
    g = torch.Generator().manual_seed(seed)
    D = 2 if q.bidirectional else 1
    x = torch.randn(B, T, I, generator=g)
    lengths = torch.tensor([max(1, T - 2 * k) for k in range(B)])[torch.randperm(B, generator=g)]
    LD = q.num_layers * D
    hx = (
        torch.randn(LD, B, q.proj_size or H, generator=g),
        torch.randn(LD, B, H, generator=g),
    )
    return x, lengths, hx


def packed_call(m, x, lengths, hx):
    with torch.no_grad():
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        y, (h, c) = m(packed, hx)
        y, _ = pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])
    return y, h, c


def session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def run(sess, x, lengths, hx):
    feed = {"x": x.numpy(), "h0": hx[0].numpy(), "c0": hx[1].numpy()}
    if lengths is not None:
        feed["lengths"] = lengths.numpy()
    return sess.run(None, feed)


def weight_elements(q) -> int:
    return sum(b.numel() for n, b in q.named_buffers() if n.startswith("weight_") and b.dim() == 2)


def initializer_elements(proto) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in proto.graph.initializer:
        name = onnx.TensorProto.DataType.Name(t.data_type)
        out[name] = out.get(name, 0) + int(np.prod(t.dims))
    return out


# (variant kwargs, layers, bidirectional, mode, int8_lstm): native node and Scan, int8 and bf16
DEQUANT_CASES = {
    "vanilla-int8-bi-2": ({}, 2, True, "int8", "dequantize"),
    "peephole-no-forget-int8-uni": (
        {"peephole": True, "forget_gate": False},
        1,
        False,
        "int8",
        "dequantize",
    ),
    "coupled-bf16-bi": ({"coupled": True}, 1, True, "bf16", "dynamic"),
    "layer-norm-int8-bi": ({"layer_norm": True}, 1, True, "int8", "dynamic"),
    "proj-zoneout-bf16-uni-2": (
        {"proj_size": 4, "zoneout_h": 0.2, "zoneout_c": 0.3},
        2,
        False,
        "bf16",
        "dynamic",
    ),
    "proj-peephole-int8-bi": ({"proj_size": 4, "peephole": True}, 1, True, "int8", "dynamic"),
}


@pytest.mark.parametrize("case", list(DEQUANT_CASES))
def test_dequantize_in_graph_equals_the_dequantized_model(case, tmp_path):
    kw, layers, bi, mode, how = DEQUANT_CASES[case]
    q = build(kw, layers, bi, mode)
    ref = dequantized(q)
    path = tmp_path / "q.onnx"
    proto = to_onnx(q, torch.randn(3, 7, I), path, lengths=True, int8_lstm=how)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    ops = {(n.domain, n.op_type) for n in proto.graph.node}
    scan = bool(kw.get("layer_norm") or kw.get("proj_size") or kw.get("zoneout_h"))
    assert (("", "Scan") in ops) == scan and (("", "LSTM") in ops) == (not scan)
    assert ("com.microsoft", "DynamicQuantizeLSTM") not in ops
    assert ("", "DequantizeLinear" if mode == "int8" else "Cast") in ops
    assert not any(n.domain.startswith("lstmkit") for n in proto.graph.node)
    # the weight matrices are in the file quantized, and nowhere in float
    elems = initializer_elements(proto)
    stored = "INT8" if mode == "int8" else "BFLOAT16"
    assert elems.get(stored, 0) >= weight_elements(q), elems
    assert elems.get("FLOAT", 0) < weight_elements(q), elems
    meta = json.loads({p.key: p.value for p in proto.metadata_props}["lstmkit_quantization"])
    assert meta["mode"] == mode and meta["compute"].startswith("float32")
    sess = session(path)
    for B, T in ((4, 5), (1, 8), (2, 1)):
        x, lengths, hx = inputs(q, B, T, seed=B + T)
        want = packed_call(ref, x, lengths, hx)
        for got, w in zip(run(sess, x, lengths, hx), want, strict=True):
            np.testing.assert_allclose(got, w.numpy(), atol=TOL, rtol=0)


@pytest.mark.parametrize("kw", [{}, {"layer_norm": True, "proj_size": 4}], ids=["native", "scan"])
def test_eager_lstm_forward_of_a_quantized_lstm_is_the_dequantized_packed_call(kw):
    q = build(kw, 2, True, "int8")
    x, lengths, hx = inputs(q, 4, 6)
    want = packed_call(dequantized(q), x, lengths, hx)
    with torch.no_grad():
        y, (h, c) = lstm_forward(q, x, hx, lengths)
    for got, w in zip((y, h, c), want, strict=True):
        torch.testing.assert_close(got, w, atol=TOL, rtol=0)


# --------------------------------------------------------------------------- DynamicQuantizeLSTM


def _ort_quantize(x: torch.Tensor):
    """ORT's dynamic uint8 quantization of a whole tensor (rnn_helpers' GetQuantizationParameter
    and MLAS's QuantizeLinear), float32: ``(q - z) as float64, a``."""
    x = x.to(torch.float32)
    lo, hi = torch.clamp(x.min(), max=0.0), torch.clamp(x.max(), min=0.0)
    a = torch.where(hi == lo, torch.ones(()), (hi - lo) / 255.0)
    z = torch.round(torch.clamp(-lo / a, 0.0, 255.0))
    qx = torch.clamp(torch.round(x / a) + z, 0.0, 255.0)
    return (qx - z).double(), a


def _qgemm(x: torch.Tensor, wq: torch.Tensor, ws: torch.Tensor) -> torch.Tensor:
    """``x (N, K) @ (ws * wq)^T`` as ORT's quantized GEMM: exact integer sums, then one
    float32 multiplier ``a * s_j`` per column."""
    qx, a = _ort_quantize(x)
    acc = (qx @ wq.double().T).to(torch.float32)  # exact: |acc| < 2^24 here
    return acc * (a * ws)[None]


def emulate_dynamic_quantize_lstm(q: QuantizedLSTM, x: torch.Tensor, hx):
    """ORT's DynamicQuantizeLSTM on ``x (1, T, I)`` (batch 1, full length, batch_first), layer
    by layer: the input of all steps quantized at once (per direction, the same tensor), each
    ``h_{t-1}`` on its own; vanilla gates."""
    D = 2 if q.bidirectional else 1
    h0, c0 = hx
    layer_in = x[0]  # (T, I)
    hs, cs = [], []
    for k in range(q.num_layers):
        outs = []
        for d in range(D):
            sfx = f"_l{k}" + ("_reverse" if d else "")
            g = lambda n, sfx=sfx: getattr(q, n + sfx)  # noqa: E731
            inp = layer_in.flip(0) if d else layer_in
            xg = _qgemm(inp, g("weight_ih"), g("scale_ih")) + g("bias_ih") + g("bias_hh")
            h, c = h0[k * D + d], c0[k * D + d]  # (1, H)
            ys = []
            for t in range(inp.shape[0]):
                gates = xg[t : t + 1] + _qgemm(h, g("weight_hh"), g("scale_hh"))
                i, f, gg, o = gates.chunk(4, -1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
                h = torch.sigmoid(o) * torch.tanh(c)
                ys.append(h[0])
            y = torch.stack(ys)
            outs.append(y.flip(0) if d else y)
            hs.append(h)
            cs.append(c)
        layer_in = torch.cat(outs, -1)
    return layer_in[None], torch.stack(hs), torch.stack(cs)


@pytest.mark.parametrize("layers, bi", [(1, False), (2, True)], ids=["uni-1", "bi-2"])
def test_dynamic_quantize_lstm_equals_the_emulation_of_ort(layers, bi, tmp_path):
    q = build({}, layers, bi, "int8", seed=layers)
    path = tmp_path / "dq.onnx"
    proto = to_onnx(q, torch.randn(3, 7, I), path)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    nodes = [n for n in proto.graph.node if n.op_type == "DynamicQuantizeLSTM"]
    assert len(nodes) == layers and all(n.domain == "com.microsoft" for n in nodes)
    assert not any(n.op_type in ("LSTM", "Scan", "DequantizeLinear") for n in proto.graph.node)
    W = next(t for t in proto.graph.initializer if t.name == nodes[0].input[1])
    assert W.data_type == onnx.TensorProto.INT8 and list(W.dims) == [2 if bi else 1, I, 4 * H]
    meta = json.loads({p.key: p.value for p in proto.metadata_props}["lstmkit_quantization"])
    assert meta["mode"] == "int8" and "DynamicQuantizeLSTM" in meta["compute"]
    sess = session(path)
    ref = dequantized(q)
    for T in (9, 1):
        x, _, hx = inputs(q, 1, T, seed=T)
        want = emulate_dynamic_quantize_lstm(q, x, hx)
        with torch.no_grad():
            y, (h, c) = ref(x, hx)
        got = run(sess, x, None, hx)
        emulation_err = float_err = 0.0
        for gv, w, fl in zip(got, want, (y, h, c), strict=True):
            np.testing.assert_allclose(gv, w.numpy(), atol=EMULATION_TOL, rtol=0)
            emulation_err = max(emulation_err, float(np.abs(gv - w.numpy()).max()))
            float_err = max(float_err, float(np.abs(gv - fl.numpy()).max()))
        # the emulation is the discriminating reference: ORT is much further from float
        assert float_err > 20 * emulation_err, (float_err, emulation_err)


def _dsigmoid(z, eps):
    """The most sigma can move on [z - eps, z + eps]: eps times sigma' at the point nearest 0."""
    s = torch.sigmoid(torch.clamp(z.abs() - eps, min=0.0))
    return eps * s * (1 - s)


def _dtanh(z, eps):
    return eps * (1 - torch.tanh(torch.clamp(z.abs() - eps, min=0.0)) ** 2)


def float_bound(q: QuantizedLSTM, x: torch.Tensor, hx):
    """``y`` of the dequantized float LSTM (one layer, full lengths, vanilla) and the bound on
    DynamicQuantizeLSTM's distance from it, per element (see the module docstring)."""
    D = 2 if q.bidirectional else 1
    xt = x.transpose(0, 1).double()  # (T, B, I)
    _, a_x = _ort_quantize(xt)
    ys, bounds = [], []
    for d in range(D):
        sfx = "_l0" + ("_reverse" if d else "")
        g = lambda n, sfx=sfx: getattr(q, n + sfx).double()  # noqa: E731
        W = g("weight_ih") * g("scale_ih")[:, None]
        R = g("weight_hh") * g("scale_hh")[:, None]
        b = g("bias_ih") + g("bias_hh")
        inp = xt.flip(0) if d else xt
        h, c = hx[0][d].double(), hx[1][d].double()
        e_h, e_c = torch.zeros_like(h), torch.zeros_like(c)
        eps_x = 0.5 * float(a_x) * W.abs().sum(1)  # (4H,)
        y, e = [], []
        for t in range(inp.shape[0]):
            lo = torch.clamp(h.min() - e_h.max(), max=0.0)
            hi = torch.clamp(h.max() + e_h.max(), min=0.0)
            a_h = (hi - lo) / 255.0
            eps = eps_x + (e_h + 0.5 * a_h) @ R.abs().T + 1e-6  # (B, 4H)
            ei, ef, eg, eo = eps.chunk(4, -1)
            gates = inp[t] @ W.T + h @ R.T + b
            i_pre, f_pre, g_pre, o_pre = gates.chunk(4, -1)
            i, f, o = torch.sigmoid(i_pre), torch.sigmoid(f_pre), torch.sigmoid(o_pre)
            gg = torch.tanh(g_pre)
            di, df, do = _dsigmoid(i_pre, ei), _dsigmoid(f_pre, ef), _dsigmoid(o_pre, eo)
            dg = _dtanh(g_pre, eg)
            e_c = (
                torch.clamp(f + df, max=1.0) * e_c
                + df * c.abs()
                + torch.clamp(i + di, max=1.0) * dg
                + di * gg.abs()
            )
            c = f * c + i * gg
            e_h = torch.clamp(o + do, max=1.0) * _dtanh(c, e_c) + do * torch.tanh(c).abs()
            h = o * torch.tanh(c)
            y.append(h)
            e.append(e_h)
        y, e = torch.stack(y), torch.stack(e)
        ys.append(y.flip(0) if d else y)
        bounds.append(e.flip(0) if d else e)
    return torch.cat(ys, -1).transpose(0, 1), torch.cat(bounds, -1).transpose(0, 1)


def test_dynamic_quantize_lstm_is_within_the_derived_bound_of_the_float_model(tmp_path):
    q = build({}, 1, True, "int8", seed=3)
    path = tmp_path / "dq.onnx"
    to_onnx(q, torch.randn(3, 7, I), path)
    sess = session(path)
    x, _, hx = inputs(q, 5, 8, seed=4)
    want, bound = float_bound(q, x, hx)
    with torch.no_grad():  # the bound's float trajectory is the dequantized model's
        torch.testing.assert_close(dequantized(q)(x, hx)[0].double(), want, atol=TOL, rtol=0)
    got = run(sess, x, None, hx)[0]
    err = np.abs(got - want.numpy())
    assert (err <= bound.numpy() + TOL).all(), float((err - bound.numpy()).max())
    assert bound.max() < 0.05  # not vacuous: a few percent of h's range [-1, 1]
    assert err.max() > 1e-4  # and ORT does quantize the activations


# --------------------------------------------------------------------------- size, options


def test_the_quantized_file_is_smaller_than_the_float_export(tmp_path):
    """Weights dominate at H = 256, I = 64: int8 a quarter of float (plus the scales), bf16
    half."""
    torch.manual_seed(0)
    m = lstmkit.LSTM(64, 256).eval()
    ex = torch.randn(4, 2, 64)
    to_onnx(m, ex, tmp_path / "f.onnx")
    size = (tmp_path / "f.onnx").stat().st_size
    assert size > 4 * (4 * 256 * (64 + 256))  # the float weights are in it
    limits = {("int8", "dynamic"): 0.35, ("int8", "dequantize"): 0.35, ("bf16", "dynamic"): 0.6}
    for (mode, how), limit in limits.items():
        path = tmp_path / f"{mode}-{how}.onnx"
        to_onnx(QuantizedLSTM.from_float(m, mode), ex, path, int8_lstm=how)
        ratio = path.stat().st_size / size
        assert ratio < limit, (mode, how, ratio)


def test_an_unknown_int8_lstm_is_refused_naming_the_option(tmp_path):
    q = build({}, 1, False, "int8")
    with pytest.raises(ExportError, match="int8_lstm must be one of dynamic, dequantize"):
        to_onnx(q, torch.randn(2, 3, I), tmp_path / "x.onnx", int8_lstm="fast")
    assert not (tmp_path / "x.onnx").exists()


# --------------------------------------------------------------------------- a task model


def test_a_quantized_task_model_exports_and_predicts_the_float_labels(tmp_path):
    """The sentiment fixture, quantized to int8 (DynamicQuantizeLSTM) and bf16: ``lstmkit
    predict model.onnx`` (torch-free) gives the float run's labels on the fixture inputs."""
    from pathlib import Path

    from lstmkit.infer import onnx_predict
    from lstmkit.infer.export import export_task_model
    from lstmkit.infer.load import load_trained

    fixtures = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoints"
    expected = json.loads((fixtures / "expected.json").read_text())["sentiment"]
    task, model, ckpt = load_trained(fixtures / "sentiment", torch.device("cpu"))
    for mode in ("int8", "bf16"):
        out = tmp_path / f"{mode}.onnx"
        result = export_task_model(task, lstmkit.quantize(model, mode), ckpt, out)
        assert result.metadata["quantization"]["mode"] == mode
        assert result.metadata["state"]["cell"] == "lstm"
        got = onnx_predict.predict_file(out, expected["inputs"])
        assert [g["label"] for g in got] == [w["label"] for w in expected["outputs"]]
