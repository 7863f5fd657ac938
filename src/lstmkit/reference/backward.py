r"""Hand-written backward through time for the whole LSTM recurrence.

This is the specification the fused kernels follow step by step (the C++ kernel in
``lstmkit/kernels/cpu/lstm.cpp`` mirrors :func:`~lstmkit.reference.lstm.recurrence_forward`
and :func:`recurrence_backward` line for line). It computes what autograd would compute through
:func:`lstmkit.reference.lstm.lstm_recurrence` (the same forward scan), and is checked against
it and with :func:`torch.autograd.gradcheck` in float64.

Per step, going back in time, with ``dh``/``dc`` the adjoints of the state after the step:

.. math::
    \begin{aligned}
    d\tilde h &= (1 - z_h)\, dh, \quad dm = d\tilde h\, W_{hr} \ (\text{or } d\tilde h) \\
    do &= dm \odot \tanh(\hat c), \quad d\hat c = dm \odot o \odot (1 - \tanh^2 \hat c) \\
    d\tilde c &= (1 - z_c)\, dc + LN_c^{-1}(d\hat c) + do_{pre} \odot w_{co} \\
    di &= d\tilde c \odot g, \ dg = d\tilde c \odot i, \ df = d\tilde c \odot c_{t-1} \\
    dc_{t-1} &= d\tilde c \odot f + z_c\, dc + di_{pre} \odot w_{ci} + df_{pre} \odot w_{cf} \\
    dh_{t-1} &= (LN_{hh}^{-1}(d\text{gates})\, W_{hh}) \odot m_{drop} + z_h\, dh
    \end{aligned}

and ``dW_hh``, ``dW_hr`` are one GEMM each over all steps after the loop.

Saved tensors: :class:`~lstmkit.reference.recurrence.SavedTensors` (the same names in the C++
kernel and the Triton kernels).
"""

from __future__ import annotations

import torch
from torch import Tensor

from lstmkit.reference.lstm import recurrence_forward
from lstmkit.reference.options import DEFAULT_OPTS, CellOptions
from lstmkit.reference.recurrence import (
    N_GRAD_ARGS,
    RecurrenceGrads,
    RecurrenceInputs,
    SavedTensors,
    check_recurrence_args,
)


def _ln_backward(dx_hat: Tensor, x_hat: Tensor, rstd: Tensor) -> Tensor:
    """Adjoint of ``x_hat = (x - mean) * rstd`` given ``d x_hat``."""
    mean_d = dx_hat.mean(-1, keepdim=True)
    mean_dx = (dx_hat * x_hat).mean(-1, keepdim=True)
    return rstd * (dx_hat - mean_d - x_hat * mean_dx)


def _steps(T: int, reverse: bool) -> range:
    return range(T - 1, -1, -1) if reverse else range(T)


def _active(batch_sizes: Tensor | None, t: int, B: int) -> int:
    return B if batch_sizes is None else int(batch_sizes[t])


def recurrence_backward(
    inputs: RecurrenceInputs,
    s: SavedTensors,
    dout: Tensor,  # (T, B, P)
    dh_n: Tensor,  # (B, P)
    dc_n: Tensor,  # (B, H)
    batch_sizes: Tensor | None,
    reverse: bool,
    opts: CellOptions,
    needs_grad: tuple[bool, ...] | None = None,
) -> RecurrenceGrads:
    """Gradients of ``xg, h0, c0`` and every weight; None where the input is None.

    ``needs_grad`` is accepted for the common backend signature; this loop computes them all.
    """
    (xg, h0, c0, w_hh, b_hh, w_hr, w_ci, w_cf, w_co, ln_hh, ln_c_w, ln_c_b, zh, zc, dmask) = inputs
    T, B, G = xg.shape
    H = G // 4
    dh, dc = dh_n.clone(), dc_n.clone()
    dxg = torch.zeros_like(xg)
    d_rec = torch.zeros_like(xg)  # adjoint of h_in @ W_hh^T, for dW_hh
    dhn_all = torch.zeros_like(dout) if w_hr is not None else None
    dw_ci = torch.zeros_like(w_ci) if w_ci is not None else None
    dw_cf = torch.zeros_like(w_cf) if w_cf is not None else None
    dw_co = torch.zeros_like(w_co) if w_co is not None else None
    dln_hh = torch.zeros_like(ln_hh) if ln_hh is not None else None
    dln_c_w = torch.zeros_like(ln_c_w) if ln_c_w is not None else None
    dln_c_b = torch.zeros_like(ln_c_b) if ln_c_b is not None else None
    for t in reversed(_steps(T, reverse)):
        n = _active(batch_sizes, t, B)
        dh_t = dh[:n] + dout[t, :n]
        dc_t = dc[:n]
        if zh is not None:
            dh_new, dh_keep = (1 - zh[t, :n]) * dh_t, zh[t, :n] * dh_t
        else:
            dh_new, dh_keep = dh_t, None
        if zc is not None:
            dc_new, dc_keep = (1 - zc[t, :n]) * dc_t, zc[t, :n] * dc_t
        else:
            dc_new, dc_keep = dc_t, None
        i, f, g, o = s.gates[t, :n].chunk(4, 1)
        if w_hr is not None:
            dhn_all[t, :n] = dh_new
            dm = dh_new @ w_hr
        else:
            dm = dh_new
        tc = torch.tanh(s.c_out[t, :n])
        do = dm * tc
        dc_out = dm * o * (1 - tc * tc)
        if ln_c_w is not None:
            c_hat = s.c_hat[t, :n]
            dln_c_w += (dc_out * c_hat).sum(0)
            dln_c_b += dc_out.sum(0)
            dc_new = dc_new + _ln_backward(dc_out * ln_c_w, c_hat, s.rstd_c[t, :n])
        else:
            dc_new = dc_new + dc_out
        do_pre = do * o * (1 - o)
        if w_co is not None:
            dc_new = dc_new + do_pre * w_co
            dw_co += (do_pre * s.c_new[t, :n]).sum(0)
        cp = s.c_prev[t, :n]
        di = dc_new * g
        dg = dc_new * i
        df = dc_new * cp
        dcp = dc_new * f
        if dc_keep is not None:
            dcp = dcp + dc_keep
        if opts.coupled:
            di = di - df
            df_pre = torch.zeros_like(df)
        elif not opts.forget_gate:
            df_pre = torch.zeros_like(df)
        else:
            df_pre = df * f * (1 - f)
        di_pre = di * i * (1 - i)
        dg_pre = dg * (1 - g * g)
        if w_ci is not None:
            dcp = dcp + di_pre * w_ci + df_pre * w_cf
            dw_ci += (di_pre * cp).sum(0)
            dw_cf += (df_pre * cp).sum(0)
        dgates = torch.cat([di_pre, df_pre, dg_pre, do_pre], 1)
        dxg[t, :n] = dgates
        if ln_hh is not None:
            r_hat = s.r_hat[t, :n]
            dln_hh += (dgates * r_hat).sum(0)
            dr = _ln_backward(dgates * ln_hh, r_hat, s.rstd_hh[t, :n])
        else:
            dr = dgates
        d_rec[t, :n] = dr
        dh_in = dr @ w_hh
        if dmask is not None:
            dh_in = dh_in * dmask[:n]
        dh[:n] = dh_in if dh_keep is None else dh_in + dh_keep
        dc[:n] = dcp
    dw_hh = d_rec.reshape(-1, G).T @ s.h_in.reshape(-1, w_hh.shape[1])
    db_hh = dxg.sum((0, 1)) if b_hh is not None else None
    dw_hr = dhn_all.reshape(-1, w_hr.shape[0]).T @ s.m.reshape(-1, H) if w_hr is not None else None
    return RecurrenceGrads(
        dxg, dh, dc, dw_hh, db_hh, dw_hr, dw_ci, dw_cf, dw_co, dln_hh, dln_c_w, dln_c_b
    )


def stash_for_backward(
    ctx, batch_sizes, reverse, opts, inputs: RecurrenceInputs, saved: SavedTensors | None
) -> None:
    """Keep what any recurrence backward needs on ``ctx`` (shared by every backend's Function)."""
    if saved is not None:
        ctx.save_for_backward(*inputs, *saved)
    ctx.meta = (batch_sizes, reverse, opts)


def unstash_for_backward(ctx) -> tuple:
    """``inputs, saved, batch_sizes, reverse, opts`` as :func:`stash_for_backward` kept them."""
    batch_sizes, reverse, opts = ctx.meta
    tensors = ctx.saved_tensors
    n = len(RecurrenceInputs._fields)
    return (
        RecurrenceInputs(*tensors[:n]),
        SavedTensors(*tensors[n:]),
        batch_sizes,
        reverse,
        opts,
    )


def needs_recurrence_save(ctx) -> bool:
    """Whether any differentiable tensor argument (after batch_sizes, reverse, opts) needs grad."""
    return any(ctx.needs_input_grad[3 : 3 + N_GRAD_ARGS])


def double_backward_error(backend: str) -> RuntimeError:
    """The error a first-order backend raises when asked for a second derivative."""
    return RuntimeError(
        f"double backward is not supported on backend={backend!r}: its backward through the "
        "recurrence is first-order only; use backend='reference' (eager autograd) for higher "
        "derivatives"
    )


def _first_order_grads(backend: str, compute, inputs: tuple[Tensor | None, ...]):
    """``compute()``'s gradients, tied to ``inputs`` by a node whose own backward raises.

    Used when the backward runs with ``create_graph=True``. Without the tie the gradients would
    carry no graph back to the inputs, and a second derivative would come out silently as None
    (``allow_unused=True``) or as torch's "not used in the graph".
    """

    class FirstOrderOnly(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *_tied):
            return tuple(compute())

        @staticmethod
        def backward(ctx, *_grads):
            raise double_backward_error(backend)

    return FirstOrderOnly.apply(*inputs)


def recurrence_function(
    name: str, doc: str, forward, backward, backend: str
) -> type[torch.autograd.Function]:
    """An autograd Function around one backend's recurrence: the shape every backend shares.

    ``forward`` and ``backward`` have the signatures of
    :func:`~lstmkit.reference.lstm.recurrence_forward` and :func:`recurrence_backward`
    (see :mod:`lstmkit.reference.recurrence`). The Function's ``run(inputs, batch_sizes,
    reverse, opts)`` returns ``out, h_n, c_n`` (it calls ``apply(batch_sizes, reverse, opts,
    *inputs)``, autograd needing the tensors as arguments); it saves tensors only when some
    input needs a gradient, and gives None for gradients nobody asked for. First derivatives
    only: differentiating its gradients raises :func:`double_backward_error` naming ``backend``.
    """

    def fwd(ctx, batch_sizes, reverse, opts, *tensors):
        inputs = RecurrenceInputs(*tensors)
        check_recurrence_args(inputs, batch_sizes, opts)
        save = needs_recurrence_save(ctx)
        out, h_n, c_n, saved = forward(inputs, batch_sizes, reverse, opts, save)
        stash_for_backward(ctx, batch_sizes, reverse, opts, inputs, saved)
        return out, h_n, c_n

    def bwd(ctx, dout, dh_n, dc_n):
        inputs, saved, batch_sizes, reverse, opts = unstash_for_backward(ctx)
        needs = ctx.needs_input_grad[3 : 3 + N_GRAD_ARGS]

        def compute():
            grads = backward(inputs, saved, dout, dh_n, dc_n, batch_sizes, reverse, opts, needs)
            return tuple(g if n else None for g, n in zip(grads, needs, strict=True))

        if torch.is_grad_enabled():  # create_graph=True: a second derivative may follow
            grads = _first_order_grads(backend, compute, (*inputs, dout, dh_n, dc_n))
        else:
            grads = compute()
        return (None, None, None, *grads, *([None] * (len(inputs) - N_GRAD_ARGS)))

    cls = type(
        name,
        (torch.autograd.Function,),
        {"forward": staticmethod(fwd), "backward": staticmethod(bwd), "__doc__": doc},
    )

    def run(
        inputs: RecurrenceInputs,
        batch_sizes: Tensor | None = None,
        reverse: bool = False,
        opts: CellOptions = DEFAULT_OPTS,
    ) -> tuple[Tensor, Tensor, Tensor]:
        if not isinstance(inputs, RecurrenceInputs):
            raise TypeError(f"the recurrence takes RecurrenceInputs, got {type(inputs).__name__}")
        return cls.apply(batch_sizes, reverse, opts, *inputs)

    cls.run = staticmethod(run)
    return cls


LSTMRecurrenceFunction = recurrence_function(
    "LSTMRecurrenceFunction",
    """Autograd wrapper of :func:`~lstmkit.reference.lstm.recurrence_forward` /
    :func:`recurrence_backward`.

    First derivatives only; ``backend="reference"`` (eager autograd) gives higher ones.
    ``run(inputs, batch_sizes, reverse, opts)`` returns ``out, h_n, c_n``.
    """,
    recurrence_forward,
    recurrence_backward,
    backend="python",
)
