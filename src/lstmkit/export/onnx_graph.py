"""The ONNX side: the custom-domain node of :mod:`lstmkit.export.onnx_lstm` rewritten into
standard ONNX (one ``Scan`` per layer and direction), and :func:`export_model` / :func:`to_onnx`.
"""

from __future__ import annotations

import json
import os

import onnx
import torch
from onnx import TensorProto, helper
from onnx.defs import OpSchema
from onnxscript.values import Op, Opset
from torch import nn

from lstmkit.export.onnx_lstm import (
    DOMAIN,
    OP_TYPE,
    ExportError,
    _names,
    _per_dir,
    check_exportable,
)

MIN_OPSET = 18  # LayerNormalization (17) and Split's split input; torch.onnx writes 18+

_SCHEMA = OpSchema(
    OP_TYPE,
    DOMAIN,
    1,
    inputs=[
        OpSchema.FormalParameter(
            "inputs",
            "V",
            param_option=OpSchema.FormalParameterOption.Variadic,
            is_homogeneous=False,
        )
    ],
    outputs=[OpSchema.FormalParameter(n, "V") for n in ("y", "h_n", "c_n")],
    type_constraints=[("V", ["tensor(float)", "tensor(double)", "tensor(int64)"], "")],
    attributes=[OpSchema.Attribute("config", OpSchema.AttrType.STRING, "")],
)


def _translate(x, h0, c0, lengths, weights, config: str):
    """torch.onnx translation of ``lstmkit_export::lstm``: one placeholder node, expanded by
    :func:`expand_lstm_nodes` (a Scan body is easier to build with onnx.helper)."""
    return Op(Opset(DOMAIN, 1), OP_TYPE, _SCHEMA)(x, h0, c0, lengths, *weights, config=config)


class _G:
    """Nodes and constants under one unique name prefix."""

    def __init__(self, prefix: str):
        self.p, self.nodes, self.n = prefix, [], 0

    def name(self, hint: str) -> str:
        self.n += 1
        return f"{self.p}{hint}_{self.n}"

    def op(self, op_type: str, inputs, hint: str = "", outputs=None, **attrs) -> str:
        out = outputs or [self.name(hint or op_type.lower())]
        self.nodes.append(helper.make_node(op_type, list(inputs), out, **attrs))
        return out[0]

    def const(self, values, dtype=TensorProto.INT64, dims=None) -> str:
        out = self.name("const")
        dims = [len(values)] if dims is None else dims
        t = helper.make_tensor(out, dtype, dims, values)
        self.nodes.append(helper.make_node("Constant", [], [out], value=t))
        return out


def _body(cfg: dict, w: dict, prefix: str, elem: int) -> onnx.GraphProto:
    """The Scan body: state (h, c), scan inputs (xg_t, m_t) -> (h, c, y_t); weights from the
    outer scope (``w`` maps the names of :func:`_names` to outer values, ``w_hhT`` etc.)."""
    g = _G(prefix + "b_")
    H = cfg["H"]
    hp, cp, xg, m = (prefix + s for s in ("h_prev", "c_prev", "xg_t", "m_t"))
    rec = g.op("MatMul", [hp, w["w_hhT"]])
    if cfg["layer_norm"]:
        rec = g.op("LayerNormalization", [rec, w["ln_hh"]], axis=-1, epsilon=cfg["eps"])
    gates = g.op("Add", [g.op("Add", [xg, rec]), w["b_hh"]])
    i_pre, f_pre, g_pre, o_pre = (g.name(s) for s in ("i_pre", "f_pre", "g_pre", "o_pre"))
    g.op("Split", [gates, g.const([H] * 4)], outputs=[i_pre, f_pre, g_pre, o_pre], axis=-1)
    if cfg["peephole"]:
        i_pre = g.op("Add", [i_pre, g.op("Mul", [w["w_ci"], cp])])
        f_pre = g.op("Add", [f_pre, g.op("Mul", [w["w_cf"], cp])])
    i, gg = g.op("Sigmoid", [i_pre]), g.op("Tanh", [g_pre])
    need_one = cfg["coupled"] or cfg["zoneout_c"] or cfg["zoneout_h"]
    one = g.const([1.0], elem, []) if need_one else ""
    if cfg["coupled"]:
        fc = g.op("Mul", [g.op("Sub", [one, i]), cp])
    elif not cfg["forget_gate"]:
        fc = cp
    else:
        fc = g.op("Mul", [g.op("Sigmoid", [f_pre]), cp])
    c_new = g.op("Add", [fc, g.op("Mul", [i, gg])])
    if cfg["peephole"]:
        o_pre = g.op("Add", [o_pre, g.op("Mul", [w["w_co"], c_new])])
    c_out = c_new
    if cfg["layer_norm"]:
        c_out = g.op(
            "LayerNormalization", [c_new, w["ln_c"], w["ln_bias_c"]], axis=-1, epsilon=cfg["eps"]
        )
    h_new = g.op("Mul", [g.op("Sigmoid", [o_pre]), g.op("Tanh", [c_out])])
    if cfg["proj"]:
        h_new = g.op("MatMul", [h_new, w["w_hrT"]])

    def zone(new, prev, z):
        if not z:
            return new
        zc = g.const([z], elem, [])
        return g.op("Add", [g.op("Mul", [zc, prev]), g.op("Mul", [g.op("Sub", [one, zc]), new])])

    c = zone(c_new, cp, cfg["zoneout_c"])
    h = zone(h_new, hp, cfg["zoneout_h"])
    # Past a sequence's length the state stays and the output is zero (packing semantics).
    mb = g.op("Cast", [m], to=TensorProto.BOOL)
    h_o, c_o, y_o = prefix + "h_o", prefix + "c_o", prefix + "y_o"
    g.op("Where", [mb, h, hp], outputs=[h_o])
    g.op("Where", [mb, c, cp], outputs=[c_o])
    g.op("Mul", [h, m], outputs=[y_o])
    vi = lambda n: helper.make_tensor_value_info(n, elem, None)  # noqa: E731
    return helper.make_graph(
        g.nodes, prefix + "body", [vi(hp), vi(cp), vi(xg), vi(m)], [vi(h_o), vi(c_o), vi(y_o)]
    )


def _expand(node: onnx.NodeProto, prefix: str, elem: int) -> list[onnx.NodeProto]:
    cfg = json.loads(next(a.s for a in node.attribute if a.name == "config").decode())
    x, h0, c0, lengths, *weights = node.input
    L, D, K = cfg["L"], cfg["D"], _per_dir(cfg)
    g = _G(prefix)
    T = g.op("Gather", [g.op("Shape", [x]), g.const([0], dims=[])], axis=0)
    t = g.op("Range", [g.const([0], dims=[]), T, g.const([1], dims=[])])
    mask = g.op(
        "Less", [g.op("Unsqueeze", [t, g.const([1])]), g.op("Unsqueeze", [lengths, g.const([0])])]
    )
    mask = g.op("Unsqueeze", [g.op("Cast", [mask], to=elem), g.const([2])])  # (T, B, 1)
    hs, cs, inp = [], [], x
    for k in range(L):
        ys = []
        for d in range(D):
            j = k * D + d
            w = dict(zip(_names(cfg), weights[j * K : (j + 1) * K], strict=True))
            w["w_hhT"] = g.op("Transpose", [w["w_hh"]], perm=[1, 0])
            if cfg["proj"]:
                w["w_hrT"] = g.op("Transpose", [w["w_hr"]], perm=[1, 0])
            xg = g.op("MatMul", [inp, g.op("Transpose", [w["w_ih"]], perm=[1, 0])])
            if cfg["layer_norm"]:
                xg = g.op(
                    "LayerNormalization", [xg, w["ln_ih"], w["b_ih"]], axis=-1, epsilon=cfg["eps"]
                )
            else:
                xg = g.op("Add", [xg, w["b_ih"]])
            if d:
                xg = g.op("ReverseSequence", [xg, lengths], batch_axis=1, time_axis=0)
            idx = g.const([j])
            h_init = g.op("Squeeze", [g.op("Gather", [h0, idx], axis=0), g.const([0])])
            c_init = g.op("Squeeze", [g.op("Gather", [c0, idx], axis=0), g.const([0])])
            body = _body(cfg, w, f"{prefix}s{j}_", elem)
            hn, cn, y = g.name("h_n"), g.name("c_n"), g.name("y")
            g.op(
                "Scan",
                [h_init, c_init, xg, mask],
                outputs=[hn, cn, y],
                body=body,
                num_scan_inputs=2,
            )
            if d:
                y = g.op("ReverseSequence", [y, lengths], batch_axis=1, time_axis=0)
            ys.append(y)
            hs.append(g.op("Unsqueeze", [hn, g.const([0])]))
            cs.append(g.op("Unsqueeze", [cn, g.const([0])]))
        inp = ys[0] if D == 1 else g.op("Concat", ys, axis=-1)
    y_out, h_out, c_out = node.output
    g.op("Identity", [inp], outputs=[y_out])
    g.op("Concat", hs, outputs=[h_out], axis=0) if len(hs) > 1 else g.op(
        "Identity", hs, outputs=[h_out]
    )
    g.op("Concat", cs, outputs=[c_out], axis=0) if len(cs) > 1 else g.op(
        "Identity", cs, outputs=[c_out]
    )
    return g.nodes


def expand_lstm_nodes(model: onnx.ModelProto, elem: int = TensorProto.FLOAT) -> onnx.ModelProto:
    """Every ``lstmkit.export`` LSTM node of the main graph replaced by standard ONNX nodes."""
    nodes = []
    for n, node in enumerate(model.graph.node):
        if node.domain == DOMAIN and node.op_type == OP_TYPE:
            nodes += _expand(node, f"lstmkit_lstm{n}_", elem)
        else:
            nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    keep = [o for o in model.opset_import if o.domain != DOMAIN]
    del model.opset_import[:]
    model.opset_import.extend(keep)
    # Shapes of the removed node's outputs were unknown; drop stale value_info and infer again.
    del model.graph.value_info[:]
    return onnx.shape_inference.infer_shapes(model)


def export_model(
    model: nn.Module,
    args: tuple,
    path: str | os.PathLike,
    *,
    input_names: list[str],
    output_names: list[str],
    dynamic_axes=None,
    dynamic_shapes=None,
    opset: int | None = None,
    metadata: dict[str, str] | None = None,
) -> onnx.ModelProto:
    """``model`` (eval mode; its LSTMs called through :func:`lstm_forward`) as an ONNX file.

    torch.onnx's dynamo exporter, the LSTM placeholder nodes expanded, ``metadata`` written as
    metadata_props, ``onnx.checker.check_model(full_check=True)``, then saved at ``path``.
    """
    if model.training:
        raise ExportError(
            "export: the model is in train mode; call model.eval() first, only eval mode exports"
        )
    for m in model.modules():
        if isinstance(m, nn.LSTM):
            check_exportable(m)
    if opset is not None and opset < MIN_OPSET:
        raise ExportError(f"export: opset={opset} is not supported; use opset >= {MIN_OPSET}")
    kw = {}
    if dynamic_shapes is not None:
        kw["dynamic_shapes"] = dynamic_shapes
    elif dynamic_axes is not None:
        kw["dynamic_axes"] = dynamic_axes
    try:
        program = torch.onnx.export(
            model,
            tuple(args),
            dynamo=True,
            input_names=list(input_names),
            output_names=list(output_names),
            opset_version=opset,
            custom_translation_table={torch.ops.lstmkit_export.lstm.default: _translate},
            verbose=False,
            **kw,
        )
    except torch.onnx.errors.OnnxExporterError as exc:  # pragma: no cover - message kept
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]  # one line
        raise ExportError(f"export: torch.onnx could not export the model: {first}") from exc
    proto = expand_lstm_nodes(program.model_proto)
    for key, value in (metadata or {}).items():
        helper.set_model_props(
            proto, {**{p.key: p.value for p in proto.metadata_props}, str(key): str(value)}
        )
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, os.fspath(path))
    return proto


class _Bare(nn.Module):
    def __init__(self, lstm: nn.Module):
        super().__init__()
        self.lstm = lstm

    def forward(self, x, h0, c0, lengths=None):
        from lstmkit.export.onnx_lstm import lstm_forward

        y, (h_n, c_n) = lstm_forward(self.lstm, x, (h0, c0), lengths)
        return y, h_n, c_n


def to_onnx(
    module: nn.Module,
    example: torch.Tensor,
    path: str | os.PathLike,
    *,
    lengths: bool = False,
    opset: int | None = None,
    metadata: dict[str, str] | None = None,
) -> onnx.ModelProto:
    """A bare ``lstmkit.LSTM`` as ONNX: inputs ``x`` (its layout, ``batch_first`` kept), ``h0``,
    ``c0`` (``(L*D, B, P|H)``) and with ``lengths=True`` ``lengths`` (int64, ``(B,)``); outputs
    ``y``, ``h_n``, ``c_n``; batch and time dynamic, so a deployed model can stream."""
    check_exportable(module)
    if example.dim() != 3:
        raise ExportError(f"to_onnx: example must be a batched (3-d) input, got {example.dim()}-d")
    bf = module.batch_first
    B = example.shape[0 if bf else 1]
    T = example.shape[1 if bf else 0]
    LD = module.num_layers * (2 if module.bidirectional else 1)
    P = module.proj_size or module.hidden_size
    h0 = example.new_zeros(LD, B, P)
    c0 = example.new_zeros(LD, B, module.hidden_size)
    Bd, Td = torch.export.Dim("batch"), torch.export.Dim("time")
    xs = {0: Bd, 1: Td} if bf else {0: Td, 1: Bd}
    args = [example, h0, c0]
    shapes = [xs, {1: Bd}, {1: Bd}]
    names = ["x", "h0", "c0"]
    if lengths:
        args.append(torch.full((B,), T, dtype=torch.int64))
        shapes.append({0: Bd})
        names.append("lengths")
    return export_model(
        _Bare(module).eval(),
        tuple(args),
        path,
        input_names=names,
        output_names=["y", "h_n", "c_n"],
        dynamic_shapes=tuple(shapes),
        opset=opset,
        metadata=metadata,
    )
