r"""ONNX graphs of :class:`lstmkit.LSTM`: the export form of one call, and the exporter.

:func:`lstm_forward` is one ``lstm(x, hx)`` call with the semantics of a packed batch
(``pack_padded_sequence(x, lengths)``, then ``pad_packed_sequence(..., total_length=T)``):
outputs are zero past each length, ``h_n``/``c_n`` hold each sequence's state at its last valid
step, and the reverse direction starts at ``length - 1``. Each layer is one call of the custom
op ``lstmkit_export::lstm_layer``, whose signature is that of ONNX's ``LSTM`` operator with
``layout = 0``:

==============  =====================  ==================================================
input           shape                  meaning
==============  =====================  ==================================================
``x``           ``(T, B, I)``          time-major layer input
``W``           ``(D, 4H, I)``         ``W_ih`` with its gates reordered ``i, o, f, c``
``R``           ``(D, 4H, H)``         ``W_hh``, reordered the same way
``Bias``        ``(D, 8H)``            ``[b_ih | b_hh]``, reordered
``lengths``     ``(B,)`` int32         ``sequence_lens``
``h0, c0``      ``(D, B, H)``          initial state
``P``           ``(D, 3H)``            peepholes ``w_ci, w_co, w_cf`` (ONNX order i, o, f)
==============  =====================  ==================================================

and outputs ``Y (T, D, B, H)``, ``Y_h, Y_c (D, B, H)``. Its eager implementation is the
recurrence below in PyTorch (so an export wrapper can be compared with the real module); while
``torch.onnx.export`` runs, a custom translation turns it into one native ONNX ``LSTM`` node.

ONNX's LSTM (with ``f`` the sigmoid, ``g = h = tanh``):

.. math::
    \begin{aligned}
    i_t &= \sigma(x_t W_i^T + h_{t-1} R_i^T + P_i \odot c_{t-1} + Wb_i + Rb_i) \\
    f_t &= \sigma(x_t W_f^T + h_{t-1} R_f^T + P_f \odot c_{t-1} + Wb_f + Rb_f) \\
    \tilde c_t &= \tanh(x_t W_c^T + h_{t-1} R_c^T + Wb_c + Rb_c) \\
    c_t &= f_t \odot c_{t-1} + i_t \odot \tilde c_t \\
    o_t &= \sigma(x_t W_o^T + h_{t-1} R_o^T + P_o \odot c_t + Wb_o + Rb_o) \\
    h_t &= o_t \odot \tanh(c_t)
    \end{aligned}

which is lstmkit's vanilla and peephole LSTM (see :mod:`lstmkit.reference.variants`);
``forget_bias`` is only the initial value of the forget-gate bias, already in ``b_ih``, and
``weight_drop`` in eval is the plain ``W_hh`` and ``recurrent_dropout`` in eval is no mask.
``coupled`` (CIFG, :math:`f_t = 1 - i_t`) is the node's ``input_forget = 1``, and
``forget_gate=False`` (:math:`f_t = 1`) a forget gate saturated by its bias (see
:func:`onnx_weights`); both checked against lstmkit in ONNX Runtime. The variants ONNX's
operator does not express (layer norm, projection, zoneout, whose eval form mixes the previous
state in) go through :mod:`lstmkit.export.onnx_lstm` (a placeholder op that
:func:`lstmkit.export.onnx_graph.expand_lstm_nodes` turns into one ``Scan`` per layer and
direction); :func:`export_model` here handles both kinds of node in one model.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from lstmkit.utils.errors import UserError

__all__ = ["ExportError", "export_model", "lstm_forward", "onnx_weights", "to_onnx"]

OPSETS = range(18, 24)  # what torch.onnx's dynamo exporter writes and this module checked
DEFAULT_OPSET = 18


class ExportError(UserError):
    """A model or an option that has no export form: one line naming it and what works."""


# ---------------------------------------------------------------------------------------------
# the custom op: ONNX LSTM semantics, eager in PyTorch


def _reorder(w: Tensor) -> Tensor:
    """Gate blocks along dim 0 from lstmkit/torch's ``i, f, g, o`` to ONNX's ``i, o, f, c``."""
    # slices, not chunk: the exporter's constant folding skips multi-output Splits, and with
    # slices the reordered weights fold into initializers (no reorder ops left in the graph)
    H = w.shape[0] // 4
    return torch.cat([w[:H], w[3 * H :], w[H : 2 * H], w[2 * H : 3 * H]], 0)


def _onnx_direction(
    x: Tensor,
    W: Tensor,
    R: Tensor,
    Bias: Tensor,
    lengths: Tensor,
    h: Tensor,
    c: Tensor,
    P: Tensor,
    reverse: bool,
    input_forget: int = 0,
) -> tuple[Tensor, Tensor, Tensor]:
    """One direction of ONNX's LSTM, eagerly: ``Y (T, B, H)``, ``h_n``, ``c_n``. Steps at or
    past a length keep the state and output zeros; the reverse direction reads each sequence
    backwards from its own last step."""
    T = x.shape[0]
    H = R.shape[-1]
    t = torch.arange(T, device=x.device)
    valid = t[:, None] < lengths[None, :].to(torch.int64)  # (T, B)
    if reverse:
        # step k reads x at length-1-k (within the sequence)
        idx = (lengths[None, :].to(torch.int64) - 1 - t[:, None]).clamp(min=0)
        x = x.gather(0, idx[..., None].expand(-1, -1, x.shape[-1]))
    xw = x @ W.T + Bias[: 4 * H] + Bias[4 * H :]
    pi, po, pf = P.chunk(3)
    ys = []
    for k in range(T):
        gates = xw[k] + h @ R.T
        i_pre, o_pre, f_pre, g_pre = gates.chunk(4, -1)
        i = torch.sigmoid(i_pre + pi * c)
        f = 1.0 - i if input_forget else torch.sigmoid(f_pre + pf * c)
        c_new = f * c + i * torch.tanh(g_pre)
        o = torch.sigmoid(o_pre + po * c_new)
        h_new = o * torch.tanh(c_new)
        m = valid[k][:, None]
        h = torch.where(m, h_new, h)
        c = torch.where(m, c_new, c)
        ys.append(torch.where(m, h_new, torch.zeros_like(h_new)))
    y = torch.stack(ys)
    if reverse:  # back to time order: output step t came from reversed step length-1-t
        y = y.gather(0, idx[..., None].expand(-1, -1, H)) * valid[..., None].to(y.dtype)
    return y, h, c


@torch.library.custom_op("lstmkit_export::lstm_layer", mutates_args=())
def lstm_layer(
    x: Tensor,
    W: Tensor,
    R: Tensor,
    Bias: Tensor,
    lengths: Tensor,
    h0: Tensor,
    c0: Tensor,
    P: Tensor,
    input_forget: int = 0,
) -> tuple[Tensor, Tensor, Tensor]:
    """ONNX ``LSTM`` (layout 0, ``direction`` forward when ``W`` has one direction,
    bidirectional when two): ``Y (T, D, B, H), Y_h, Y_c (D, B, H)``."""
    outs = [
        _onnx_direction(x, W[d], R[d], Bias[d], lengths, h0[d], c0[d], P[d], d == 1, input_forget)
        for d in range(W.shape[0])
    ]
    return (
        torch.stack([o[0] for o in outs], 1),
        torch.stack([o[1] for o in outs]),
        torch.stack([o[2] for o in outs]),
    )


@lstm_layer.register_fake
def _(x, W, R, Bias, lengths, h0, c0, P, input_forget=0):
    D, H = W.shape[0], R.shape[-1]
    return x.new_empty(x.shape[0], D, x.shape[1], H), h0.new_empty(h0.shape), c0.new_empty(c0.shape)


def _lstm_layer_onnx(x, W, R, Bias, lengths, h0, c0, P, input_forget=0):
    """The custom translation: one native ONNX ``LSTM`` node, layout 0."""
    from onnxscript import opset18 as op

    direction = "bidirectional" if W.shape[0] == 2 else "forward"
    H = R.shape[-1]
    y, y_h, y_c = op.LSTM(
        x,
        W,
        R,
        Bias,
        lengths,
        h0,
        c0,
        P,
        direction=direction,
        hidden_size=H,
        input_forget=input_forget,
        layout=0,
    )
    return y, y_h, y_c


# ---------------------------------------------------------------------------------------------
# lstm_forward

_NO_NATIVE = (
    ("layer_norm", "layer_norm=True"),
    ("zoneout_h", "zoneout_h > 0"),
    ("zoneout_c", "zoneout_c > 0"),
)
# recurrent_dropout needs nothing: lstmkit draws its mask in training only, eval is vanilla.


FORGET_ALWAYS = 1.0e4
"""The forget-gate pre-activation that stands for ``forget_gate=False`` (see onnx_weights)."""


def _needs_scan(lstm: nn.Module) -> bool:
    """Whether ``lstm`` has an option the native ONNX LSTM node cannot express."""
    opts = getattr(lstm, "variant_options", None)
    bad = opts is not None and any(getattr(opts, name) for name, _ in _NO_NATIVE)
    return bad or bool(getattr(lstm, "proj_size", 0))


def check_exportable(lstm: nn.Module) -> None:
    """An :class:`ExportError` for what is not an LSTM module or is in train mode (dropout,
    zoneout, weight drop and recurrent dropout export in their eval forms only)."""
    from lstmkit.nn.quantized import QuantizedLSTM

    if not isinstance(lstm, (nn.LSTM, QuantizedLSTM)):
        raise ExportError(
            f"export: lstm_forward takes an lstmkit.LSTM or torch.nn.LSTM, got "
            f"{type(lstm).__name__}"
        )
    if lstm.training:
        raise ExportError(
            f"export: {type(lstm).__name__} is in train mode; call .eval() first "
            "(dropout, zoneout and weight drop export in their eval form only)"
        )


def onnx_weights(lstm: nn.Module, layer: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""``W (D, 4H, I), R (D, 4H, H), Bias (D, 8H), P (D, 3H)`` of one layer in ONNX's gate
    order (zeros where the module has no bias or no peepholes).

    ``forget_gate=False`` (:math:`f = 1`) becomes a forget gate whose weights, recurrent
    weights and peephole are zero and whose bias is :data:`FORGET_ALWAYS`:
    :math:`\sigma(10^4)` is exactly 1 in float32 (and in ONNX Runtime's clamped sigmoid), so
    the native node computes :math:`c_t = c_{t-1} + i_t \odot g_t` exactly."""
    D = 2 if lstm.bidirectional else 1
    H = lstm.hidden_size
    Ws, Rs, Bs, Ps = [], [], [], []
    opts = getattr(lstm, "variant_options", None)
    peephole = opts is not None and opts.peephole
    no_forget = opts is not None and not opts.forget_gate
    for d in range(D):
        sfx = f"_l{layer}" + ("_reverse" if d else "")
        w_ih, w_hh = getattr(lstm, "weight_ih" + sfx), getattr(lstm, "weight_hh" + sfx)
        Ws.append(_reorder(w_ih))
        Rs.append(_reorder(w_hh))
        if lstm.bias:
            b = [_reorder(getattr(lstm, n + sfx)) for n in ("bias_ih", "bias_hh")]
            Bs.append(torch.cat(b))
        else:
            Bs.append(w_ih.new_zeros(8 * H))
        if peephole:
            ci, cf, co = (getattr(lstm, n + sfx) for n in ("weight_ci", "weight_cf", "weight_co"))
            Ps.append(torch.cat([ci, co, cf]))  # ONNX's peephole order: i, o, f
        else:
            Ps.append(w_ih.new_zeros(3 * H))
        if no_forget:  # ONNX order i, o, f, c: the f rows are [2H, 3H)
            keep = torch.ones(4 * H, dtype=w_ih.dtype, device=w_ih.device)
            keep[2 * H : 3 * H] = 0
            Ws[-1], Rs[-1] = Ws[-1] * keep[:, None], Rs[-1] * keep[:, None]
            always = torch.zeros(8 * H, dtype=w_ih.dtype, device=w_ih.device)
            always[2 * H : 3 * H] = FORGET_ALWAYS
            Bs[-1] = Bs[-1] * torch.cat([keep, keep]) + always
            Ps[-1] = Ps[-1] * torch.cat([keep[: 2 * H], keep[2 * H : 3 * H]])
    return torch.stack(Ws), torch.stack(Rs), torch.stack(Bs), torch.stack(Ps)


def lstm_forward(
    lstm: nn.Module,
    x: Tensor,
    hx: tuple[Tensor, Tensor] | None = None,
    lengths: Tensor | None = None,
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """The export form of ``lstm(x, hx)`` (an :class:`lstmkit.LSTM` or a ``torch.nn.LSTM`` in
    eval mode, batched ``x``): with ``lengths (B,)`` the packed semantics described in the
    module docstring, without them every sequence has length ``T``. Returns ``y`` (in the
    module's layout, ``(.., D*H)``) and ``(h_n, c_n)`` of shape ``(L*D, B, H)``. A
    :class:`lstmkit.nn.quantized.QuantizedLSTM` keeps its int8 / bf16 weights in the graph
    (:mod:`lstmkit.export.quantized`)."""
    from lstmkit.nn.quantized import QuantizedLSTM

    if isinstance(lstm, QuantizedLSTM):
        from lstmkit.export import quantized

        check_exportable(lstm)
        return quantized.lstm_forward(lstm, x, hx, lengths)
    if _needs_scan(lstm):
        # Scan bodies of lstmkit.export.onnx_lstm (helper B1's module) for what the native node
        # does not express; export_model expands their placeholder nodes
        from lstmkit.export import onnx_lstm

        check_exportable(lstm)
        return onnx_lstm.lstm_forward(lstm, x, hx, lengths)
    check_exportable(lstm)

    def layer(k, layer_in, lens, h0, c0, coupled):
        W, R, Bias, P = onnx_weights(lstm, k)
        return lstm_layer(layer_in, W, R, Bias, lens, h0, c0, P, coupled)

    return native_forward(lstm, x, hx, lengths, layer)


def native_forward(lstm: nn.Module, x: Tensor, hx, lengths: Tensor | None, layer):
    """The layer loop of :func:`lstm_forward` on native-node layers: ``layer(k, layer_in
    (T, B, I), lengths (B,) int32, h0, c0 (D, B, H), coupled) -> Y (T, D, B, H), h_n, c_n``
    (the float or the quantized node)."""
    if x.dim() != 3:
        raise ExportError(
            f"export: lstm_forward takes a batched 3-D input, got shape {tuple(x.shape)}"
        )
    x_tb = x.transpose(0, 1) if lstm.batch_first else x
    T, B = x_tb.shape[0], x_tb.shape[1]
    D = 2 if lstm.bidirectional else 1
    H = lstm.hidden_size
    if lengths is None:
        # every sequence full length, as a tensor op so that T stays symbolic in the graph
        lens = torch.ones_like(x_tb[0, :, 0], dtype=torch.int32) * T
    else:
        lens = lengths.to(torch.int32)
    if hx is None:
        h0 = c0 = x_tb.new_zeros(lstm.num_layers * D, B, H)
    else:
        h0, c0 = hx
    # CIFG: ONNX's input_forget=1 computes f = 1 - i (i with its peephole), lstmkit's coupled
    # gate exactly (reference/variants.py coupled_forget_gate); checked in ONNX Runtime
    coupled = int(bool(getattr(getattr(lstm, "variant_options", None), "coupled", False)))
    layer_in = x_tb
    hs, cs = [], []
    for k in range(lstm.num_layers):
        y, h_n, c_n = layer(
            k, layer_in, lens, h0[k * D : (k + 1) * D], c0[k * D : (k + 1) * D], coupled
        )
        layer_in = y.permute(0, 2, 1, 3).reshape(T, B, D * H)  # (T, D, B, H) -> (T, B, D*H)
        hs.append(h_n)
        cs.append(c_n)
    y = layer_in.transpose(0, 1) if lstm.batch_first else layer_in
    return y, (torch.cat(hs), torch.cat(cs))


# ---------------------------------------------------------------------------------------------
# export


def _check_opset(opset: int | None) -> int:
    if opset is None:
        return DEFAULT_OPSET
    if isinstance(opset, bool) or not isinstance(opset, int) or opset not in OPSETS:
        raise ExportError(
            f"export: opset {opset!r} is not supported; use {OPSETS.start}..{OPSETS.stop - 1}"
        )
    return opset


def _check_eval(model: nn.Module) -> None:
    if model.training:
        raise ExportError(
            f"export: the {type(model).__name__} is in train mode; call model.eval() first"
        )
    for name, m in model.named_modules():
        if m.training:
            raise ExportError(
                f"export: submodule {name!r} ({type(m).__name__}) is in train mode; "
                "call model.eval() first"
            )


def _translations() -> dict:
    """The custom translations: the native node for ``lstm_layer``, and the Scan placeholder
    of :mod:`lstmkit.export.onnx_graph` where that module is present."""
    table = {torch.ops.lstmkit_export.lstm_layer.default: _lstm_layer_onnx}
    if (Path(__file__).parent / "onnx_graph.py").exists():
        from lstmkit.export import onnx_graph

        table[torch.ops.lstmkit_export.lstm.default] = onnx_graph._translate
    from lstmkit.export import quantized

    table.update(quantized.translations())
    return table


def export_model(
    model: nn.Module,
    args: tuple,
    path: str | Path,
    *,
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: dict | None = None,
    dynamic_shapes=None,
    opset: int | None = None,
    metadata: dict[str, str] | None = None,
    int8_lstm: str = "dynamic",
):
    """Export ``model(*args)`` (whose forward calls :func:`lstm_forward` for its LSTMs) with
    torch.onnx's dynamo exporter, its LSTM layers as native ONNX ``LSTM`` nodes; write
    ``metadata`` into ``metadata_props``, check the model with ``onnx.checker`` (full check)
    and save it at ``path`` (weights inside the file). Returns the ``onnx.ModelProto``.

    ``dynamic_shapes`` as for :func:`torch.export.export`; ``dynamic_axes`` (``{input name:
    {axis: name}}``) is turned into it. A model holding a
    :class:`~lstmkit.nn.quantized.QuantizedLSTM` keeps its weights quantized in the file
    (:mod:`lstmkit.export.quantized`; ``int8_lstm``: ``"dynamic"``, ONNX Runtime's int8
    ``DynamicQuantizeLSTM`` where the native node applies, or ``"dequantize"``, float32
    compute from ``DequantizeLinear``) and says so in ``metadata_props``
    (``lstmkit_quantization``, a JSON document)."""
    import json

    import onnx

    from lstmkit.export import quantized

    opset = _check_opset(opset)
    quantized.check_int8_lstm(int8_lstm)
    _check_eval(model)
    if not isinstance(args, tuple):
        args = (args,)
    if dynamic_shapes is None and dynamic_axes is not None:
        dims: dict[str, object] = {}
        dynamic_shapes = tuple(
            {
                int(ax): dims.setdefault(n, torch.export.Dim(n))
                for ax, n in dynamic_axes.get(name, {}).items()
            }
            or None
            for name in input_names
        )
    try:
        with quantized.int8_lstm(int8_lstm):
            program = _onnx_export(model, args, input_names, output_names, dynamic_shapes, opset)
    except UserError:
        raise
    except Exception as e:  # torch.export's errors: one line with the cause
        cause = e
        while cause.__cause__ is not None and not isinstance(cause, UserError):
            cause = cause.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ExportError(f"export: torch.onnx.export failed: {first}") from e
    proto = program.model_proto
    if any(n.domain == "lstmkit.export" for n in proto.graph.node):
        from lstmkit.export import onnx_graph

        proto = onnx_graph.expand_lstm_nodes(proto)
    proto = quantized.finish(proto)
    props = dict(metadata or {})
    described = quantized.describe(model, int8_lstm)
    if described is not None:
        props.setdefault("lstmkit_quantization", json.dumps(described))
    for k, v in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = str(k), str(v)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))
    return proto


def _onnx_export(model, args, input_names, output_names, dynamic_shapes, opset):
    return torch.onnx.export(
        model,
        args,
        dynamo=True,
        input_names=list(input_names),
        output_names=list(output_names),
        dynamic_shapes=dynamic_shapes,
        opset_version=opset,
        custom_translation_table=_translations(),
        optimize=True,
        verbose=False,
    )


def to_onnx(
    module: nn.Module,
    example: Tensor,
    path: str | Path,
    *,
    lengths: bool = False,
    opset: int | None = None,
    metadata: dict[str, str] | None = None,
    int8_lstm: str = "dynamic",
):
    """Export a bare LSTM as a streaming graph: inputs ``x, h0, c0`` (and ``lengths (B,)``
    int64 when ``lengths``), outputs ``y, h_n, c_n``; batch and time dynamic. ``example`` is
    an input of the module's layout (``(B, T, I)`` with ``batch_first``). A
    :class:`~lstmkit.nn.quantized.QuantizedLSTM` exports with its weights quantized
    (``int8_lstm``: see :func:`export_model`)."""

    class _Bare(nn.Module):
        def __init__(self, lstm):
            super().__init__()
            self.lstm = lstm

        def forward(self, x, h0, c0, lens=None):
            y, (h, c) = lstm_forward(self.lstm, x, (h0, c0), lens)
            return y, h, c

    check_exportable(module)
    D = 2 if module.bidirectional else 1
    bdim = 0 if module.batch_first else 1
    B, T = example.shape[bdim], example.shape[1 - bdim]
    LD, H = module.num_layers * D, module.hidden_size
    h0 = example.new_zeros(LD, B, getattr(module, "proj_size", 0) or H)
    bd, td = torch.export.Dim("B"), torch.export.Dim("T")
    args = (example, h0, example.new_zeros(LD, B, H))
    shapes = ({bdim: bd, 1 - bdim: td}, {1: bd}, {1: bd})
    names = ["x", "h0", "c0"]
    if lengths:
        args += (torch.full((B,), T, dtype=torch.int64),)
        shapes += ({0: bd},)
        names.append("lengths")
    with torch.no_grad():
        return export_model(
            _Bare(module).eval(),
            args,
            path,
            input_names=names,
            output_names=["y", "h_n", "c_n"],
            dynamic_shapes=shapes,
            opset=opset,
            metadata=metadata,
            int8_lstm=int8_lstm,
        )
