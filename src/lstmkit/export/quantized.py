r"""ONNX export of :class:`lstmkit.nn.quantized.QuantizedLSTM` (``lstmkit quantize``'s models).

The weight matrices go into the file as they are stored, int8 with one float scale per output
row (:math:`W_{jk} \approx s_j q_{jk}`) or bfloat16; biases, peepholes and layer-norm
parameters stay float32. Two graph forms:

- ``int8_lstm="dynamic"`` (the default, for int8 models of the variants ONNX's ``LSTM`` node
  expresses: vanilla, peephole, coupled, no forget gate): one ONNX Runtime contrib node
  ``com.microsoft::DynamicQuantizeLSTM`` per layer. Its ``W (D, I, 4H)`` and ``R (D, H, 4H)``
  are the int8 weights transposed (gate order ``i, o, f, c``), ``W_scale``/``R_scale`` the
  per-row scales ``(D, 4H)`` and the zero points 0. ONNX Runtime computes the products in
  integers: at run time it quantizes the layer input (all steps at once) and each step's
  :math:`h_{t-1}` to uint8, asymmetric per tensor,

  .. math::
      a = \frac{\max(0, \max x) - \min(0, \min x)}{255},\quad
      z = \mathrm{round}(-\min(0, \min x) / a),\quad
      \hat x = \mathrm{clamp}(\mathrm{round}(x / a) + z, 0, 255)

  and the gate pre-activation :math:`\sum_k x_k W_{jk}` becomes
  :math:`a\, s_j \sum_k (\hat x_k - z)\, q_{jk}` (exact int32 sums); the activations,
  the cell update and the state stay float32. This is not lstmkit's eager math (which keeps
  activations float): the difference per gate and step is at most
  :math:`\tfrac12 a \sum_k |s_j q_{jk}|`, see tests/export/test_quantized_export.py.
- everything else (bf16, layer norm, projection, zoneout, or ``int8_lstm="dequantize"``):
  the float export's graph (native ``LSTM`` node or ``Scan``) with each weight matrix an int8
  initializer and a ``DequantizeLinear`` with per-axis scales, or a bfloat16 initializer and a
  ``Cast`` to float. The file is about 4x (int8) or 2x (bf16) smaller than the float export,
  but ONNX Runtime then computes in float32 from the dequantized weights: the same numbers as
  the QuantizedLSTM's dequantized float model (:func:`lstmkit.nn.quantized.dequantized`).
"""

from __future__ import annotations

import contextlib
import contextvars

import torch
from torch import Tensor, nn

from lstmkit.export.graph import (
    FORGET_ALWAYS,
    ExportError,
    _needs_scan,
    _reorder,
    lstm_layer,
    native_forward,
)
from lstmkit.nn.quantized import QuantizedLSTM

__all__ = ["INT8_LSTM", "describe", "int8_lstm", "lstm_forward", "quantized_lstms"]

INT8_LSTM = ("dynamic", "dequantize")
"""How an int8 LSTM the native node expresses is exported: ``DynamicQuantizeLSTM`` (int8
compute in ONNX Runtime) or the float graph fed by ``DequantizeLinear``."""

MS_DOMAIN = "com.microsoft"
_INT8_LSTM: contextvars.ContextVar[str] = contextvars.ContextVar("int8_lstm", default="dynamic")


def check_int8_lstm(value: object) -> str:
    if value not in INT8_LSTM:
        raise ExportError(f"export: int8_lstm must be one of {', '.join(INT8_LSTM)}, got {value!r}")
    return value  # type: ignore[return-value]


@contextlib.contextmanager
def int8_lstm(value: str):
    """Within the block, :func:`lstm_forward` exports int8 native-node LSTMs as ``value``."""
    token = _INT8_LSTM.set(check_int8_lstm(value))
    try:
        yield
    finally:
        _INT8_LSTM.reset(token)


def quantized_lstms(model: nn.Module) -> list[QuantizedLSTM]:
    return [m for m in model.modules() if isinstance(m, QuantizedLSTM)]


def uses_dynamic(q: QuantizedLSTM, how: str | None = None) -> bool:
    """Whether ``q`` exports as ``DynamicQuantizeLSTM`` nodes."""
    how = _INT8_LSTM.get() if how is None else how
    return q.mode == "int8" and how == "dynamic" and not _needs_scan(q)


def describe(model: nn.Module, how: str = "dynamic") -> dict | None:
    """The ``quantization`` section of an export's metadata, None for a float model."""
    qs = quantized_lstms(model)
    if not qs:
        return None
    dynamic = [uses_dynamic(q, how) for q in qs]
    if all(dynamic):
        compute = "int8: com.microsoft::DynamicQuantizeLSTM, activations quantized at run time"
    elif not any(dynamic):
        compute = "float32 from the dequantized weights"
    else:
        compute = "mixed: DynamicQuantizeLSTM where the native node applies, else float32"
    activations = getattr(qs[0], "activations", "float")
    return {
        "mode": qs[0].mode,
        "weights": "int8, one scale per row" if qs[0].mode == "int8" else "bfloat16",
        "compute": compute,
        # What the run computes in lstmkit (`lstmkit.quantize(..., activations=)`): with "int8"
        # its activations are quantized symmetric per row, DynamicQuantizeLSTM quantizes them
        # u8 asymmetric per tensor, and the dequantized graphs keep them float32, so an export
        # agrees with the eager run to the rounding of the activations, not bitwise.
        "lstmkit_activations": activations,
    }


# ---------------------------------------------------------------------------------------------
# the weights: custom ops so that the exporter keeps them quantized in the file


@torch.library.custom_op("lstmkit_export::dequantize_rows", mutates_args=())
def dequantize_rows(q: Tensor, scale: Tensor, axis: int) -> Tensor:
    """``q * scale`` with ``scale`` along ``axis`` (ONNX ``DequantizeLinear``, zero point 0)."""
    shape = [1] * q.dim()
    shape[axis] = -1
    return q.to(torch.float32) * scale.reshape(shape)


@dequantize_rows.register_fake
def _(q, scale, axis):
    return torch.empty(q.shape, dtype=torch.float32, device=q.device)


def _dequantize_rows_onnx(q, scale, axis: int):
    from onnxscript import opset18 as op

    return op.DequantizeLinear(q, scale, axis=axis)


@torch.library.custom_op("lstmkit_export::bf16_to_float", mutates_args=())
def bf16_to_float(q: Tensor) -> Tensor:
    """A bfloat16 weight as float32 (ONNX ``Cast``)."""
    return q.to(torch.float32)


@bf16_to_float.register_fake
def _(q):
    return torch.empty(q.shape, dtype=torch.float32, device=q.device)


def _bf16_to_float_onnx(q):
    # a placeholder node, not a Cast: the exporter would fold a Cast of a small initializer
    # back into a float32 one; finish() turns it into the Cast once the optimizer has run
    from onnxscript.values import Op, Opset

    return Op(Opset(PLACEHOLDER_DOMAIN, 1), "CastBF16", _BF16_SCHEMA)(q)


PLACEHOLDER_DOMAIN = "lstmkit.quantized"


def _bf16_schema():
    from onnx.defs import OpSchema

    return OpSchema(
        "CastBF16",
        PLACEHOLDER_DOMAIN,
        1,
        inputs=[OpSchema.FormalParameter("q", "T")],
        outputs=[OpSchema.FormalParameter("w", "V")],
        type_constraints=[("T", ["tensor(bfloat16)"], ""), ("V", ["tensor(float)"], "")],
    )


_BF16_SCHEMA = _bf16_schema()


def finish(proto):
    """The placeholder ``CastBF16`` nodes as ``Cast(to=FLOAT)``; the placeholder domain's
    opset import dropped (after the exporter's optimizer, which would have folded them)."""
    from onnx import TensorProto, helper

    nodes = []
    for node in proto.graph.node:
        if node.domain == PLACEHOLDER_DOMAIN and node.op_type == "CastBF16":
            node = helper.make_node(
                "Cast", list(node.input), list(node.output), name=node.name, to=TensorProto.FLOAT
            )
        nodes.append(node)
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    keep = [o for o in proto.opset_import if o.domain != PLACEHOLDER_DOMAIN]
    del proto.opset_import[:]
    proto.opset_import.extend(keep)
    return proto


def translations() -> dict:
    ops = torch.ops.lstmkit_export
    return {
        ops.dequantize_rows.default: _dequantize_rows_onnx,
        ops.bf16_to_float.default: _bf16_to_float_onnx,
        ops.quant_lstm_layer.default: _quant_lstm_layer_onnx,
    }


def float_weight(q: QuantizedLSTM, name: str) -> Tensor:
    """The float form of the stored matrix ``name`` (``weight_ih_l0``...), as a graph op on the
    stored int8 / bf16 buffer."""
    w = getattr(q, name)
    if q.mode == "bf16":
        return bf16_to_float(w)
    return dequantize_rows(w, getattr(q, "scale_" + name[len("weight_") :]), 0)


# ---------------------------------------------------------------------------------------------
# DynamicQuantizeLSTM


@torch.library.custom_op("lstmkit_export::quant_lstm_layer", mutates_args=())
def quant_lstm_layer(
    x: Tensor,
    Wq: Tensor,
    W_scale: Tensor,
    Rq: Tensor,
    R_scale: Tensor,
    Bias: Tensor,
    lengths: Tensor,
    h0: Tensor,
    c0: Tensor,
    P: Tensor,
    input_forget: int = 0,
) -> tuple[Tensor, Tensor, Tensor]:
    """``com.microsoft::DynamicQuantizeLSTM`` with ``Wq (D, 4H, I)``, ``Rq (D, 4H, H)`` int8
    in ONNX's gate order and their row scales ``(D, 4H)``. The eager form is the float LSTM of
    the dequantized weights (:func:`lstmkit.export.graph.lstm_layer`); ONNX Runtime's node
    also quantizes the activations (see the module docstring)."""
    W = Wq.to(torch.float32) * W_scale[..., None]
    R = Rq.to(torch.float32) * R_scale[..., None]
    return tuple(t.clone() for t in lstm_layer(x, W, R, Bias, lengths, h0, c0, P, input_forget))


@quant_lstm_layer.register_fake
def _(x, Wq, W_scale, Rq, R_scale, Bias, lengths, h0, c0, P, input_forget=0):
    D, H = Wq.shape[0], Rq.shape[-1]
    return x.new_empty(x.shape[0], D, x.shape[1], H), h0.new_empty(h0.shape), c0.new_empty(c0.shape)


def _dq_lstm_schema():
    from onnx.defs import OpSchema

    return OpSchema(
        "DynamicQuantizeLSTM",
        MS_DOMAIN,
        1,
        inputs=[
            OpSchema.FormalParameter(
                "inputs",
                "V",
                param_option=OpSchema.FormalParameterOption.Variadic,
                is_homogeneous=False,
            )
        ],
        outputs=[OpSchema.FormalParameter(n, "T") for n in ("Y", "Y_h", "Y_c")],
        type_constraints=[
            ("V", ["tensor(float)", "tensor(int8)", "tensor(int32)"], ""),
            ("T", ["tensor(float)"], ""),
        ],
        attributes=[
            OpSchema.Attribute("direction", OpSchema.AttrType.STRING, ""),
            OpSchema.Attribute("hidden_size", OpSchema.AttrType.INT, ""),
            OpSchema.Attribute("input_forget", OpSchema.AttrType.INT, ""),
        ],
    )


_DQ_LSTM_SCHEMA = _dq_lstm_schema()


def _quant_lstm_layer_onnx(x, Wq, W_scale, Rq, R_scale, Bias, lengths, h0, c0, P, input_forget=0):
    from onnx import TensorProto
    from onnxscript import opset18 as op
    from onnxscript.values import Op, Opset

    D, H = Wq.shape[0], Rq.shape[-1]
    # ORT's layout is the transpose of ONNX LSTM's: (D, K, 4H); the Transpose of an
    # initializer is folded by the exporter, so the file holds the transposed int8 weights
    W = op.Transpose(Wq, perm=[0, 2, 1])
    R = op.Transpose(Rq, perm=[0, 2, 1])
    zero = op.Cast(op.Mul(W_scale, op.Constant(value_float=0.0)), to=TensorProto.INT8)
    node = Op(Opset(MS_DOMAIN, 1), "DynamicQuantizeLSTM", _DQ_LSTM_SCHEMA)
    y, y_h, y_c = node(
        x,
        W,
        R,
        Bias,
        lengths,
        h0,
        c0,
        P,
        W_scale,
        zero,
        R_scale,
        zero,
        direction="bidirectional" if D == 2 else "forward",
        hidden_size=H,
        input_forget=input_forget,
        _num_outputs=3,
    )
    return y, y_h, y_c


def _onnx_quant_weights(q: QuantizedLSTM, layer: int):
    """``Wq (D, 4H, I), W_scale (D, 4H), Rq, R_scale, Bias (D, 8H), P (D, 3H)`` of one int8
    layer in ONNX's gate order; ``forget_gate=False`` as in
    :func:`lstmkit.export.graph.onnx_weights` (zero forget rows, bias :data:`FORGET_ALWAYS`)."""
    D = 2 if q.bidirectional else 1
    H = q.hidden_size
    opts = q.variant_options
    out: list[list[Tensor]] = [[] for _ in range(6)]
    for d in range(D):
        sfx = f"_l{layer}" + ("_reverse" if d else "")
        w_ih, w_hh = getattr(q, "weight_ih" + sfx), getattr(q, "weight_hh" + sfx)
        s_ih, s_hh = getattr(q, "scale_ih" + sfx), getattr(q, "scale_hh" + sfx)
        Wq, Ws, Rq, Rs = _reorder(w_ih), _reorder(s_ih), _reorder(w_hh), _reorder(s_hh)
        if q.bias:
            Bias = torch.cat([_reorder(getattr(q, n + sfx)) for n in ("bias_ih", "bias_hh")])
        else:
            Bias = s_ih.new_zeros(8 * H)
        if opts.peephole:
            ci, cf, co = (getattr(q, n + sfx) for n in ("weight_ci", "weight_cf", "weight_co"))
            P = torch.cat([ci, co, cf])
        else:
            P = s_ih.new_zeros(3 * H)
        if not opts.forget_gate:  # ONNX order i, o, f, c: the f rows are [2H, 3H)
            keep = torch.ones(4 * H, dtype=torch.bool, device=w_ih.device)
            keep[2 * H : 3 * H] = False
            Wq = torch.where(keep[:, None], Wq, torch.zeros_like(Wq))
            Rq = torch.where(keep[:, None], Rq, torch.zeros_like(Rq))
            always = torch.zeros(8 * H, device=w_ih.device)
            always[2 * H : 3 * H] = FORGET_ALWAYS
            Bias = Bias * torch.cat([keep, keep]).to(Bias.dtype) + always
            P = P * torch.cat([keep[: 2 * H], keep[2 * H : 3 * H]]).to(P.dtype)
        for lst, t in zip(out, (Wq, Ws, Rq, Rs, Bias, P), strict=True):
            lst.append(t)
    return tuple(torch.stack(t) for t in out)


def _onnx_float_weights(q: QuantizedLSTM, layer: int):
    """``W, R, Bias, P`` of :func:`lstmkit.export.graph.onnx_weights` with the matrices as
    dequantize ops on the stored weights (reordered while still quantized)."""
    D = 2 if q.bidirectional else 1
    H = q.hidden_size
    opts = q.variant_options
    Ws, Rs, Bs, Ps = [], [], [], []
    for d in range(D):
        sfx = f"_l{layer}" + ("_reverse" if d else "")
        mats = []
        for n in ("ih", "hh"):
            w = _reorder(getattr(q, f"weight_{n}{sfx}"))
            if q.mode == "bf16":
                mats.append(bf16_to_float(w))
            else:
                mats.append(dequantize_rows(w, _reorder(getattr(q, f"scale_{n}{sfx}")), 0))
        W, R = mats
        if q.bias:
            Bias = torch.cat([_reorder(getattr(q, n + sfx)) for n in ("bias_ih", "bias_hh")])
        else:
            Bias = W.new_zeros(8 * H)
        if opts.peephole:
            ci, cf, co = (getattr(q, n + sfx) for n in ("weight_ci", "weight_cf", "weight_co"))
            P = torch.cat([ci, co, cf])
        else:
            P = W.new_zeros(3 * H)
        if not opts.forget_gate:
            keep = torch.ones(4 * H, device=W.device)
            keep[2 * H : 3 * H] = 0
            W, R = W * keep[:, None], R * keep[:, None]
            always = torch.zeros(8 * H, device=W.device)
            always[2 * H : 3 * H] = FORGET_ALWAYS
            Bias = Bias * torch.cat([keep, keep]) + always
            P = P * torch.cat([keep[: 2 * H], keep[2 * H : 3 * H]])
        Ws.append(W)
        Rs.append(R)
        Bs.append(Bias)
        Ps.append(P)
    return torch.stack(Ws), torch.stack(Rs), torch.stack(Bs), torch.stack(Ps)


# ---------------------------------------------------------------------------------------------
# lstm_forward


def _scan_forward(q: QuantizedLSTM, x: Tensor, hx, lengths: Tensor | None):
    """The Scan path (layer norm, projection, zoneout) of :mod:`lstmkit.export.onnx_lstm`,
    its weight matrices dequantize ops."""
    import json

    from lstmkit.export import onnx_lstm

    # eager too the op's own form (the dequantized float math), not q's kernel: the export
    # form must be what the graph computes
    cfg = onnx_lstm._config(q)
    xt = x.transpose(0, 1) if q.batch_first else x
    T, B = xt.shape[0], xt.shape[1]
    LD = cfg["L"] * cfg["D"]
    if hx is None:
        h0, c0 = xt.new_zeros(LD, B, cfg["P"]), xt.new_zeros(LD, B, cfg["H"])
    else:
        h0, c0 = hx
    if lengths is None:
        lengths = torch.ones(B, dtype=torch.int64, device=x.device) * T
    weights = onnx_lstm._weights(q, cfg, matrix=lambda name: float_weight(q, name))
    y, h_n, c_n = onnx_lstm._lstm_op(xt, h0, c0, lengths.to(torch.int64), weights, json.dumps(cfg))
    return (y.transpose(0, 1) if q.batch_first else y), (h_n, c_n)


def lstm_forward(
    q: QuantizedLSTM,
    x: Tensor,
    hx: tuple[Tensor, Tensor] | None = None,
    lengths: Tensor | None = None,
):
    """:func:`lstmkit.export.lstm_forward` of a :class:`QuantizedLSTM`: ``y, (h_n, c_n)``
    with packing semantics; in the graph the weights stay int8 / bf16 (see the module doc).
    Eager, the result is the dequantized float model's, what the dequantize-in-graph forms
    compute (DynamicQuantizeLSTM differs from it by its activation quantization)."""
    if _needs_scan(q):
        return _scan_forward(q, x, hx, lengths)
    if uses_dynamic(q):

        def layer(k, layer_in, lens, h0, c0, coupled):
            Wq, Ws, Rq, Rs, Bias, P = _onnx_quant_weights(q, k)
            return quant_lstm_layer(layer_in, Wq, Ws, Rq, Rs, Bias, lens, h0, c0, P, coupled)

    else:

        def layer(k, layer_in, lens, h0, c0, coupled):
            W, R, Bias, P = _onnx_float_weights(q, k)
            return lstm_layer(layer_in, W, R, Bias, lens, h0, c0, P, coupled)

    return native_forward(q, x, hx, lengths, layer)
