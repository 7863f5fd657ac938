r"""Reference LSTM math in eager PyTorch: the single source of truth.

Every fused kernel in :mod:`lstmkit.kernels` computes exactly what these functions compute, and
the tests compare them. Gates are packed ``i|f|g|o`` along the last dimension, as in
:class:`torch.nn.LSTM`.

One step (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000):

.. math::
    \begin{aligned}
    \text{gates} &= x W_{ih}^T + b_{ih} + h_{t-1} W_{hh}^T + b_{hh} \\
    i &= \sigma(i_{pre}) \quad f = \sigma(f_{pre}) \quad g = \tanh(g_{pre}) \quad
        o = \sigma(o_{pre}) \\
    c_t &= f \odot c_{t-1} + i \odot g \\
    h_t &= o \odot \tanh(c_t)
    \end{aligned}

With a projection (LSTMP, Sak et al. 2014) ``h_t = (o * tanh(c_t)) W_hr^T``.

Shape letters: ``T`` time, ``B`` batch, ``I`` input, ``H`` hidden, ``P`` output size of ``h``
(the projection size, or ``H`` without projection).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lstmkit.reference import variants

GATE_ORDER = ("i", "f", "g", "o")


@dataclass(frozen=True)
class CellOptions:
    """Compile-time switches of the recurrence; every kernel takes the same ones.

    ``coupled``: CIFG, ``f = 1 - i`` (Greff et al. 2017). ``forget_gate=False``: the 1997
    LSTM, ``f = 1``. The forget-gate rows of the weights stay in place for both, unused, so that
    parameter shapes match :class:`torch.nn.LSTM`.
    """

    coupled: bool = False
    forget_gate: bool = True
    layer_norm_eps: float = 1e-5


def lstm_gates_pre(
    x: Tensor,  # (B, I)
    h_prev: Tensor,  # (B, P)
    weight_ih: Tensor,  # (4H, I)
    weight_hh: Tensor,  # (4H, P)
    bias_ih: Tensor | None = None,  # (4H,)
    bias_hh: Tensor | None = None,  # (4H,)
) -> Tensor:  # (B, 4H)
    """``gates = x W_ih^T + b_ih + h W_hh^T + b_hh`` (both biases, as torch.nn.LSTM keeps them)."""
    gates = x @ weight_ih.T + h_prev @ weight_hh.T
    if bias_ih is not None:
        gates = gates + bias_ih
    if bias_hh is not None:
        gates = gates + bias_hh
    return gates


def lstm_gate_activations(
    i_pre: Tensor, f_pre: Tensor, g_pre: Tensor, o_pre: Tensor, opts: CellOptions = CellOptions()
) -> tuple[Tensor, Tensor, Tensor]:
    """``i = sigma(i_pre)``, ``g = tanh(g_pre)`` and ``f`` by the forget-gate variant."""
    i = torch.sigmoid(i_pre)
    g = torch.tanh(g_pre)
    if opts.coupled:
        f = variants.coupled_forget_gate(i)
    elif not opts.forget_gate:
        f = torch.ones_like(i)
    else:
        f = torch.sigmoid(f_pre)
    return i, f, g


def lstm_cell_update(i: Tensor, f: Tensor, g: Tensor, c_prev: Tensor) -> Tensor:
    """``c_t = f * c_{t-1} + i * g``."""
    return f * c_prev + i * g


def lstm_output(o: Tensor, c: Tensor, weight_hr: Tensor | None = None) -> Tensor:
    """``h_t = o * tanh(c_t)``, projected by ``W_hr^T`` when given."""
    h = o * torch.tanh(c)
    return h if weight_hr is None else h @ weight_hr.T


@dataclass
class StepTrace:
    """Everything one step computed, for introspection and the hand-written backward."""

    i: Tensor
    f: Tensor
    g: Tensor
    o: Tensor
    c: Tensor  # state after the step (after zoneout)
    h: Tensor  # state after the step (after zoneout)


def lstm_recurrent_step(
    xg: Tensor,  # (B, 4H) input pre-activations, bias_ih (and layer norm) included
    h_prev: Tensor,  # (B, P)
    c_prev: Tensor,  # (B, H)
    weight_hh: Tensor,  # (4H, P)
    bias_hh: Tensor | None = None,  # (4H,)
    weight_hr: Tensor | None = None,  # (P, H)
    weight_ci: Tensor | None = None,  # (H,) peepholes
    weight_cf: Tensor | None = None,  # (H,)
    weight_co: Tensor | None = None,  # (H,)
    ln_weight_hh: Tensor | None = None,  # (4H,) layer norm on h W_hh^T
    ln_weight_c: Tensor | None = None,  # (H,) layer norm on c before the output tanh
    ln_bias_c: Tensor | None = None,  # (H,)
    zoneout_h: Tensor | None = None,  # (B, P) keep-previous weights: a 0/1 mask or a constant
    zoneout_c: Tensor | None = None,  # (B, H)
    dropout_h: Tensor | None = None,  # (B, P) recurrent dropout mask, already scaled by 1/(1-p)
    opts: CellOptions = CellOptions(),
) -> StepTrace:
    """One LSTM step after the input projection, with every variant as an option.

    The input part ``xg = x W_ih^T + b_ih`` is computed for all time steps at once before the
    loop (one large GEMM); this function is the recurrence the kernels fuse.
    """
    h_in = h_prev if dropout_h is None else h_prev * dropout_h
    rec = h_in @ weight_hh.T
    if ln_weight_hh is not None:
        rec = variants.layer_norm(rec, ln_weight_hh, None, opts.layer_norm_eps)
    gates = xg + rec
    if bias_hh is not None:
        gates = gates + bias_hh
    i_pre, f_pre, g_pre, o_pre = gates.chunk(4, dim=-1)
    if weight_ci is not None:  # peepholes come as a set: ci, cf, co
        i_pre, f_pre = variants.peephole_input_forget(i_pre, f_pre, c_prev, weight_ci, weight_cf)
    i, f, g = lstm_gate_activations(i_pre, f_pre, g_pre, o_pre, opts)
    c_new = lstm_cell_update(i, f, g, c_prev)
    if weight_co is not None:
        o_pre = variants.peephole_output(o_pre, c_new, weight_co)
    o = torch.sigmoid(o_pre)
    c_out = c_new
    if ln_weight_c is not None:
        c_out = variants.layer_norm(c_new, ln_weight_c, ln_bias_c, opts.layer_norm_eps)
    h_new = lstm_output(o, c_out, weight_hr)
    c = c_new if zoneout_c is None else variants.apply_zoneout(c_new, c_prev, zoneout_c)
    h = h_new if zoneout_h is None else variants.apply_zoneout(h_new, h_prev, zoneout_h)
    return StepTrace(i=i, f=f, g=g, o=o, c=c, h=h)


class _ZeroGradFor(torch.autograd.Function):
    """Identity on ``outs`` that gives ``weight``, which they do not depend on, a zero grad."""

    @staticmethod
    def forward(ctx, weight, *outs):
        ctx.weight_meta = (weight.shape, weight.dtype, weight.device)
        return tuple(o.clone() for o in outs)  # clones, not views: callers may write in place

    @staticmethod
    def backward(ctx, *grads):
        shape, dtype, device = ctx.weight_meta
        return (torch.zeros(shape, dtype=dtype, device=device), *grads)


def unused_weight_cf(
    weight_cf: Tensor | None, opts: CellOptions, *outs: Tensor
) -> tuple[Tensor, ...]:
    """``outs``, with ``weight_cf`` getting a zero gradient where the forget gate ignores it.

    With ``coupled`` (f = 1 - i) or ``forget_gate=False`` (f = 1) the peephole on f exists as a
    parameter but no output depends on it. Autograd would leave its ``.grad`` None while the
    hand-written backward and the kernels give zeros; this makes the reference give zeros too,
    as torch does for the unused forget-gate rows of ``weight_ih``.
    """
    if (
        weight_cf is None
        or not (opts.coupled or not opts.forget_gate)
        or not (torch.is_grad_enabled() and weight_cf.requires_grad)
    ):
        return outs
    return _ZeroGradFor.apply(weight_cf, *outs)


def lstm_recurrence(
    xg: Tensor,  # (T, B, 4H)
    h0: Tensor,  # (B, P)
    c0: Tensor,  # (B, H)
    weight_hh: Tensor,
    bias_hh: Tensor | None = None,
    weight_hr: Tensor | None = None,
    weight_ci: Tensor | None = None,
    weight_cf: Tensor | None = None,
    weight_co: Tensor | None = None,
    ln_weight_hh: Tensor | None = None,
    ln_weight_c: Tensor | None = None,
    ln_bias_c: Tensor | None = None,
    zoneout_h: Tensor | None = None,  # (T, B, P)
    zoneout_c: Tensor | None = None,  # (T, B, H)
    dropout_h: Tensor | None = None,  # (B, P), one mask for the whole sequence
    batch_sizes: Tensor | None = None,  # (T,) int64 on CPU, non-increasing (packed sequences)
    reverse: bool = False,
    opts: CellOptions = CellOptions(),
    record: bool = False,
) -> tuple[Tensor, Tensor, Tensor, dict[str, Tensor] | None]:
    """Scan :func:`lstm_recurrent_step` over time, eagerly; autograd gives the backward.

    ``batch_sizes[t]`` rows are active at step ``t`` (the rows of a PackedSequence, sorted by
    length). Inactive rows keep their state and output zeros, so that ``h_n`` holds each
    sequence's state at its own last step, and in the reverse direction a sequence starts from
    ``h0`` at its own last step. ``reverse`` runs from ``T-1`` down to ``0``.

    Returns ``out (T, B, P), h_n (B, P), c_n (B, H)`` and, when ``record``, the gates
    ``i, f, g, o, c, h`` stacked over time in input order.
    """
    T = xg.shape[0]
    h, c = h0, c0
    outs: list[Tensor | None] = [None] * T
    traces: list[StepTrace | None] = [None] * T
    steps = range(T - 1, -1, -1) if reverse else range(T)
    for t in steps:
        n = xg.shape[1] if batch_sizes is None else int(batch_sizes[t])
        tr = lstm_recurrent_step(
            xg[t, :n],
            h[:n],
            c[:n],
            weight_hh,
            bias_hh,
            weight_hr,
            weight_ci,
            weight_cf,
            weight_co,
            ln_weight_hh,
            ln_weight_c,
            ln_bias_c,
            None if zoneout_h is None else zoneout_h[t, :n],
            None if zoneout_c is None else zoneout_c[t, :n],
            None if dropout_h is None else dropout_h[:n],
            opts,
        )
        if n < xg.shape[1]:
            h = torch.cat([tr.h, h[n:]], 0)
            c = torch.cat([tr.c, c[n:]], 0)
            outs[t] = torch.cat([tr.h, tr.h.new_zeros(h.shape[0] - n, h.shape[1])], 0)
        else:
            h, c = tr.h, tr.c
            outs[t] = tr.h
        if record:
            traces[t] = _pad_trace(tr, xg.shape[1])
    out = torch.stack(outs, 0)  # type: ignore[arg-type]
    out, h, c = unused_weight_cf(weight_cf, opts, out, h, c)
    rec = None
    if record:
        rec = {
            k: torch.stack([getattr(tr, k) for tr in traces], 0) for k in StepTrace.__annotations__
        }
    return out, h, c, rec


def _pad_trace(tr: StepTrace, B: int) -> StepTrace:
    n = tr.i.shape[0]
    if n == B:
        return tr

    def pad(x: Tensor) -> Tensor:
        return torch.cat([x, x.new_zeros(B - n, x.shape[1])], 0)

    return StepTrace(*(pad(getattr(tr, k)) for k in StepTrace.__annotations__))
