r"""ONNX export of :class:`lstmkit.LSTM`: the export form of one call and its ONNX graph.

:func:`lstm_forward` is one LSTM call with packing semantics (zeros past each length, the
state at each sequence's last valid step, the reverse direction starting at ``length - 1``).
In eager it calls the module itself; while ``torch.onnx.export`` runs it becomes one custom op
``lstmkit_export::lstm``, emitted as a node of domain ``lstmkit.export`` and then rewritten by
:func:`export_model` into standard ONNX: per layer and direction one ``Scan`` whose body is
the step of :func:`lstmkit.reference.lstm.lstm_recurrent_step` in its eval form

.. math::
    \begin{array}{ll}
    \text{gates} = \mathrm{LN}_{ih}(x W_{ih}^T) + b_{ih} + \mathrm{LN}_{hh}(h_{t-1} W_{hh}^T)
        + b_{hh} \\
    i = \sigma(i_{pre} + w_{ci} c_{t-1}),\ f = \sigma(f_{pre} + w_{cf} c_{t-1})
        \ (1 - i \text{ coupled},\ 1 \text{ without forget gate}),\ g = \tanh(g_{pre}) \\
    \tilde c = f c_{t-1} + i g,\ o = \sigma(o_{pre} + w_{co} \tilde c),\
        \tilde h = (o \tanh(\mathrm{LN}_c(\tilde c))) W_{hr}^T \\
    c_t = z_c c_{t-1} + (1 - z_c)\tilde c,\ h_t = z_h h_{t-1} + (1 - z_h)\tilde h
    \end{array}

(zoneout's eval form mixes with the rate; recurrent dropout and weight drop are the identity
and the plain weight in eval). Past a sequence's length the state is kept and the output is
zero; the reverse direction reverses each sequence within its length (``ReverseSequence``).
"""

from __future__ import annotations

import json

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

# One error class for the whole package: graph.py's (it imports this module only lazily).
from lstmkit.export.graph import ExportError

DOMAIN = "lstmkit.export"
OP_TYPE = "LSTM"


def _config(lstm: nn.Module) -> dict:
    opts = getattr(lstm, "variant_options", None)
    get = (lambda n, d: getattr(opts, n)) if opts is not None else (lambda n, d: d)
    return {
        "L": lstm.num_layers,
        "D": 2 if lstm.bidirectional else 1,
        "H": lstm.hidden_size,
        "P": lstm.proj_size or lstm.hidden_size,
        "proj": bool(lstm.proj_size),
        "bias": bool(lstm.bias),
        "layer_norm": bool(get("layer_norm", False)),
        "peephole": bool(get("peephole", False)),
        "coupled": bool(get("coupled", False)),
        "forget_gate": bool(get("forget_gate", True)),
        "zoneout_h": float(get("zoneout_h", 0.0)),
        "zoneout_c": float(get("zoneout_c", 0.0)),
        "eps": float(get("layer_norm_eps", 1e-5)),
    }


def _weights(lstm: nn.Module, cfg: dict, matrix=None) -> list[Tensor]:
    """Per layer and direction: w_ih, w_hh, b_ih, b_hh, [w_ci, w_cf, w_co], [ln_ih, ln_hh,
    ln_c, ln_bias_c], [w_hr] (eval: weight drop's plain weight). ``matrix(name)`` gives the
    weight matrices where they are not plain attributes (a quantized LSTM's dequantize ops)."""
    if matrix is None:
        matrix = lambda name: getattr(lstm, name)  # noqa: E731
    out = []
    H = cfg["H"]
    for k in range(cfg["L"]):
        for d in range(cfg["D"]):
            s = f"_l{k}" + ("_reverse" if d else "")
            w_ih = matrix("weight_ih" + s)
            out += [w_ih, matrix("weight_hh" + s)]
            if cfg["bias"]:
                out += [getattr(lstm, "bias_ih" + s), getattr(lstm, "bias_hh" + s)]
            else:
                z = w_ih.new_zeros(4 * H)
                out += [z, z]
            if cfg["peephole"]:
                out += [getattr(lstm, f"weight_{g}{s}") for g in ("ci", "cf", "co")]
            if cfg["layer_norm"]:
                out += [getattr(lstm, f"ln_weight_{n}{s}") for n in ("ih", "hh", "c")]
                out.append(getattr(lstm, "ln_bias_c" + s))
            if cfg["proj"]:
                out.append(matrix("weight_hr" + s))
    return out


def _per_dir(cfg: dict) -> int:
    return 4 + 3 * cfg["peephole"] + 4 * cfg["layer_norm"] + cfg["proj"]


def _step(cfg, w, xg_t, h_prev, c_prev):
    """One eval step in torch, the same ops as the Scan body (the op's eager form)."""
    H, eps = cfg["H"], cfg["eps"]
    rec = h_prev @ w["w_hh"].T
    if cfg["layer_norm"]:
        rec = torch.nn.functional.layer_norm(rec, (4 * H,), w["ln_hh"], None, eps)
    gates = xg_t + rec + w["b_hh"]
    i_pre, f_pre, g_pre, o_pre = gates.chunk(4, -1)
    if cfg["peephole"]:
        i_pre = i_pre + w["w_ci"] * c_prev
        f_pre = f_pre + w["w_cf"] * c_prev
    i, g = torch.sigmoid(i_pre), torch.tanh(g_pre)
    if cfg["coupled"]:
        f = 1.0 - i
    elif not cfg["forget_gate"]:
        f = torch.ones_like(i)
    else:
        f = torch.sigmoid(f_pre)
    c_new = f * c_prev + i * g
    if cfg["peephole"]:
        o_pre = o_pre + w["w_co"] * c_new
    c_out = c_new
    if cfg["layer_norm"]:
        c_out = torch.nn.functional.layer_norm(c_new, (H,), w["ln_c"], w["ln_bias_c"], eps)
    h_new = torch.sigmoid(o_pre) * torch.tanh(c_out)
    if cfg["proj"]:
        h_new = h_new @ w["w_hr"].T
    zc, zh = cfg["zoneout_c"], cfg["zoneout_h"]
    c = zc * c_prev + (1 - zc) * c_new if zc else c_new
    h = zh * h_prev + (1 - zh) * h_new if zh else h_new
    return h, c


def _names(cfg: dict) -> list[str]:
    n = ["w_ih", "w_hh", "b_ih", "b_hh"]
    if cfg["peephole"]:
        n += ["w_ci", "w_cf", "w_co"]
    if cfg["layer_norm"]:
        n += ["ln_ih", "ln_hh", "ln_c", "ln_bias_c"]
    if cfg["proj"]:
        n.append("w_hr")
    return n


def _reverse(x: Tensor, lengths: Tensor) -> Tensor:
    """Each sequence of a (T, B, *) tensor reversed within its length (ReverseSequence)."""
    T = x.shape[0]
    t = torch.arange(T, device=x.device)[:, None]
    idx = torch.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)
    return torch.gather(x, 0, idx[..., None].expand_as(x))


def _lstm_eager(x, h0, c0, lengths, weights, config: str):
    """The custom op's eager form, time-major: what the rewritten ONNX graph computes."""
    cfg = json.loads(config)
    L, D, K = cfg["L"], cfg["D"], _per_dir(cfg)
    T = x.shape[0]
    mask = (torch.arange(T, device=x.device)[:, None] < lengths[None, :]).to(x.dtype)[..., None]
    hs, cs, inp = [], [], x
    for k in range(L):
        ys = []
        for d in range(D):
            j = k * D + d
            w = dict(zip(_names(cfg), weights[j * K : (j + 1) * K], strict=True))
            xg = inp @ w["w_ih"].T
            if cfg["layer_norm"]:
                xg = torch.nn.functional.layer_norm(
                    xg, (4 * cfg["H"],), w["ln_ih"], None, cfg["eps"]
                )
            xg = xg + w["b_ih"]
            if d:
                xg = _reverse(xg, lengths)
            h, c, y = h0[j], c0[j], []
            for t in range(T):
                h_s, c_s = _step(cfg, w, xg[t], h, c)
                m = mask[t]
                h, c = m * h_s + (1 - m) * h, m * c_s + (1 - m) * c
                y.append(m * h_s)
            y = torch.stack(y)
            ys.append(_reverse(y, lengths) if d else y)
            hs.append(h)
            cs.append(c)
        inp = torch.cat(ys, -1)
    return inp, torch.stack(hs), torch.stack(cs)


@torch.library.custom_op("lstmkit_export::lstm", mutates_args=())
def _lstm_op(
    x: Tensor, h0: Tensor, c0: Tensor, lengths: Tensor, weights: list[Tensor], config: str
) -> tuple[Tensor, Tensor, Tensor]:
    return tuple(t.clone() for t in _lstm_eager(x, h0, c0, lengths, weights, config))


@_lstm_op.register_fake
def _(x, h0, c0, lengths, weights, config):
    cfg = json.loads(config)
    T, B = x.shape[0], x.shape[1]
    return x.new_empty(T, B, cfg["D"] * cfg["P"]), torch.empty_like(h0), torch.empty_like(c0)


def check_exportable(lstm: nn.Module) -> None:
    """An :class:`ExportError` for a module in train mode or not an LSTM."""
    if not isinstance(lstm, nn.LSTM):
        raise ExportError(
            f"export: lstm_forward takes lstmkit.LSTM or torch.nn.LSTM, got {type(lstm).__name__}"
        )
    if lstm.training:
        raise ExportError(
            "export: the model is in train mode (dropout, zoneout and weight drop have no fixed "
            "graph there); call model.eval() first, only eval mode exports"
        )


def lstm_forward(lstm: nn.Module, x: Tensor, hx=None, lengths: Tensor | None = None):
    """``(y, (h_n, c_n))`` of one eval-mode call of ``lstm`` with packing semantics.

    Same as ``lstm(pack_padded_sequence(x, lengths, batch_first=lstm.batch_first,
    enforce_sorted=False), hx)`` padded back to ``T`` with zeros (or ``lstm(x, hx)`` when
    ``lengths`` is None); ``hx``/``h_n``/``c_n`` of shapes ``(L*D, B, P|H)``. Eager runs the
    module; under ``torch.onnx.export`` it is the ``lstmkit_export::lstm`` op.
    """
    check_exportable(lstm)
    if not torch.compiler.is_exporting():
        if lengths is None:
            return lstm(x, hx)
        T = x.shape[1 if lstm.batch_first else 0]
        packed = pack_padded_sequence(
            x, lengths.cpu(), batch_first=lstm.batch_first, enforce_sorted=False
        )
        y, state = lstm(packed, hx)
        y, _ = pad_packed_sequence(y, batch_first=lstm.batch_first, total_length=T)
        return y, state
    cfg = _config(lstm)
    xt = x.transpose(0, 1) if lstm.batch_first else x
    T, B = xt.shape[0], xt.shape[1]
    LD = cfg["L"] * cfg["D"]
    if hx is None:
        h0 = xt.new_zeros(LD, B, cfg["P"])
        c0 = xt.new_zeros(LD, B, cfg["H"])
    else:
        h0, c0 = hx
    if lengths is None:
        lengths = (
            torch.full((B,), T, dtype=torch.int64, device=x.device)
            if False
            else (torch.ones(B, dtype=torch.int64, device=x.device) * T)
        )
    y, h_n, c_n = _lstm_op(
        xt, h0, c0, lengths.to(torch.int64), _weights(lstm, cfg), json.dumps(cfg)
    )
    return (y.transpose(0, 1) if lstm.batch_first else y), (h_n, c_n)
