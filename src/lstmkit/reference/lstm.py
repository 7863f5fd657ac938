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

:func:`recurrence_forward` is the one scan over time, built from :func:`lstm_recurrent_step`:
run under autograd it is the reference backend (:func:`lstm_recurrence`), and with
``save=True`` it keeps what the hand-written backward (:mod:`lstmkit.reference.backward`)
reads.

Shape letters: ``T`` time, ``B`` batch, ``I`` input, ``H`` hidden, ``P`` output size of ``h``
(the projection size, or ``H`` without projection).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from lstmkit.reference import variants
from lstmkit.reference.options import DEFAULT_OPTS, CellOptions
from lstmkit.reference.recurrence import (
    RecurrenceInputs,
    SavedTensors,
    check_recurrence_args,
)

__all__ = [
    "GATE_ORDER",
    "CellOptions",
    "RecurrenceInputs",
    "SavedTensors",
    "StepTrace",
    "lstm_cell_update",
    "lstm_gate_activations",
    "lstm_gates_pre",
    "lstm_output",
    "lstm_recurrence",
    "lstm_recurrent_step",
    "recorded_gates",
    "recurrence_forward",
    "unused_weight_cf",
]

GATE_ORDER = ("i", "f", "g", "o")


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
    i_pre: Tensor, f_pre: Tensor, g_pre: Tensor, o_pre: Tensor, opts: CellOptions = DEFAULT_OPTS
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


class StepTrace(NamedTuple):
    """Everything one step computed: the states, and what the hand-written backward reads.

    The last fields are those of :class:`~lstmkit.reference.recurrence.SavedTensors` for one
    step, None where the variant has no such tensor.
    """

    i: Tensor
    f: Tensor
    g: Tensor
    o: Tensor
    c: Tensor  # state after the step (after zoneout)
    h: Tensor  # state after the step (after zoneout)
    c_prev: Tensor  # state before the step
    h_in: Tensor  # what multiplied W_hh
    c_new: Tensor  # the cell before zoneout
    c_out: Tensor  # what went into the output tanh
    r_hat: Tensor | None = None
    rstd_hh: Tensor | None = None
    c_hat: Tensor | None = None
    rstd_c: Tensor | None = None
    m: Tensor | None = None  # o * tanh(c_out) before the projection


def lstm_recurrent_step(step: RecurrenceInputs, opts: CellOptions = DEFAULT_OPTS) -> StepTrace:
    """One LSTM step after the input projection, with every variant as an option.

    ``step`` holds one step's slices: ``xg (B, 4H)`` (``x W_ih^T + b_ih``, computed for all
    time steps at once before the loop, one large GEMM), ``h0 (B, P)`` and ``c0 (B, H)`` the
    state before the step, the zoneout weights ``(B, P)``/``(B, H)`` of this step. This
    function is the recurrence the kernels fuse.
    """
    eps = opts.layer_norm_eps
    h_prev, c_prev = step.h0, step.c0
    h_in = h_prev if step.dropout_h is None else h_prev * step.dropout_h
    rec = h_in @ step.weight_hh.T
    r_hat = rstd_hh = None
    if step.ln_weight_hh is not None:
        r_hat, rstd_hh = variants.layer_norm_normalize(rec, eps)
        rec = r_hat * step.ln_weight_hh
    gates = step.xg + rec
    if step.bias_hh is not None:
        gates = gates + step.bias_hh
    i_pre, f_pre, g_pre, o_pre = gates.chunk(4, dim=-1)
    if step.weight_ci is not None:  # peepholes come as a set: ci, cf, co
        i_pre, f_pre = variants.peephole_input_forget(
            i_pre, f_pre, c_prev, step.weight_ci, step.weight_cf
        )
    i, f, g = lstm_gate_activations(i_pre, f_pre, g_pre, o_pre, opts)
    c_new = lstm_cell_update(i, f, g, c_prev)
    if step.weight_co is not None:
        o_pre = variants.peephole_output(o_pre, c_new, step.weight_co)
    o = torch.sigmoid(o_pre)
    c_out, c_hat, rstd_c = c_new, None, None
    if step.ln_weight_c is not None:
        c_hat, rstd_c = variants.layer_norm_normalize(c_new, eps)
        c_out = c_hat * step.ln_weight_c + step.ln_bias_c
    m = lstm_output(o, c_out)
    h_new = m if step.weight_hr is None else m @ step.weight_hr.T
    zc, zh = step.zoneout_c, step.zoneout_h
    c = c_new if zc is None else variants.apply_zoneout(c_new, c_prev, zc)
    h = h_new if zh is None else variants.apply_zoneout(h_new, h_prev, zh)
    m_saved = m if step.weight_hr is not None else None
    return StepTrace(
        i, f, g, o, c, h, c_prev, h_in, c_new, c_out, r_hat, rstd_hh, c_hat, rstd_c, m_saved
    )


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


_SAVED_FROM_STEP = SavedTensors._fields[1:]  # c_prev .. m; gates are i|f|g|o concatenated


def recurrence_forward(
    inputs: RecurrenceInputs,
    batch_sizes: Tensor | None = None,  # (T,) int64 on CPU, non-increasing (packed sequences)
    reverse: bool = False,
    opts: CellOptions = DEFAULT_OPTS,
    save: bool = False,
) -> tuple[Tensor, Tensor, Tensor, SavedTensors | None]:
    """Scan :func:`lstm_recurrent_step` over time, eagerly (autograd can go through it).

    ``batch_sizes[t]`` rows are active at step ``t`` (the rows of a PackedSequence, sorted by
    length). Inactive rows keep their state and output zeros, so that ``h_n`` holds each
    sequence's state at its own last step, and in the reverse direction a sequence starts from
    ``h0`` at its own last step. ``reverse`` runs from ``T-1`` down to ``0``.

    Returns ``out (T, B, P), h_n (B, P), c_n (B, H)`` and, when ``save``, the
    :class:`SavedTensors` the backward needs (zeros in inactive rows), else None. The inputs
    are not checked here; every backend's entry point checks them.
    """
    xg, zh, zc, dmask = inputs.xg, inputs.zoneout_h, inputs.zoneout_c, inputs.dropout_h
    T, B = xg.shape[0], xg.shape[1]
    h, c = inputs.h0, inputs.c0
    outs: list[Tensor | None] = [None] * T
    traces: list[StepTrace | None] = [None] * T
    for t in range(T - 1, -1, -1) if reverse else range(T):
        n = B if batch_sizes is None else int(batch_sizes[t])
        full = n == B
        tr = lstm_recurrent_step(
            inputs._replace(
                xg=xg[t] if full else xg[t, :n],
                h0=h if full else h[:n],
                c0=c if full else c[:n],
                zoneout_h=None if zh is None else zh[t, :n],
                zoneout_c=None if zc is None else zc[t, :n],
                dropout_h=dmask if dmask is None or full else dmask[:n],
            ),
            opts,
        )
        if full:
            h, c = tr.h, tr.c
            outs[t] = tr.h
        else:
            h = torch.cat([tr.h, h[n:]], 0)
            c = torch.cat([tr.c, c[n:]], 0)
            outs[t] = _pad(tr.h, B)
        if save:
            traces[t] = tr
    out = torch.stack(outs, 0)  # type: ignore[arg-type]
    if not save:
        return out, h, c, None

    def stacked(name: str) -> Tensor | None:
        if getattr(traces[0], name) is None:
            return None
        return torch.stack([_pad(getattr(tr, name), B) for tr in traces], 0)

    gates = torch.stack([_pad(torch.cat(tr[:4], -1), B) for tr in traces], 0)
    saved = SavedTensors(gates, *(stacked(name) for name in _SAVED_FROM_STEP))
    return out, h, c, saved


def _pad(x: Tensor, B: int) -> Tensor:
    """``x`` with zero rows appended up to ``B`` rows (the inactive rows of a packed step)."""
    n = x.shape[0]
    return x if n == B else torch.cat([x, x.new_zeros(B - n, *x.shape[1:])], 0)


def lstm_recurrence(
    inputs: RecurrenceInputs,
    batch_sizes: Tensor | None = None,
    reverse: bool = False,
    opts: CellOptions = DEFAULT_OPTS,
) -> tuple[Tensor, Tensor, Tensor]:
    """The reference backend: :func:`recurrence_forward` under eager autograd.

    Same signature and results as every backend's recurrence (``out, h_n, c_n``); the slowest,
    the ground truth, and the only backend with higher derivatives.
    """
    check_recurrence_args(inputs, batch_sizes, opts)
    out, h, c, _ = recurrence_forward(inputs, batch_sizes, reverse, opts)
    return unused_weight_cf(inputs.weight_cf, opts, out, h, c)


def recorded_gates(inputs: RecurrenceInputs, saved: SavedTensors, out: Tensor) -> dict[str, Tensor]:
    """``i, f, g, o, c, h`` over time ``(T, B, *)`` from a forward's saved tensors and output.

    ``c`` is the state after each step (after zoneout), ``h`` the output; rows inactive at a
    packed step hold zeros in every tensor.
    """
    i, f, g, o = saved.gates.chunk(4, -1)
    zc = inputs.zoneout_c
    c = saved.c_new if zc is None else variants.apply_zoneout(saved.c_new, saved.c_prev, zc)
    return {"i": i, "f": f, "g": g, "o": o, "c": c, "h": out}
