r"""Hand-written backward through time for the whole LSTM recurrence.

This is the specification the fused kernels follow step by step (the C++ kernel in
``lstmkit/kernels/cpu/lstm.cpp`` mirrors :func:`recurrence_forward` and
:func:`recurrence_backward` line for line). It computes what autograd would compute through
:func:`lstmkit.reference.lstm.lstm_recurrence`, and is checked against it and with
:func:`torch.autograd.gradcheck` in float64.

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

Saved tensors (the same names in the C++ kernel):
``gates (T,B,4H)`` activated ``i|f|g|o``; ``c_prev (T,B,H)`` the cell state entering each
step; ``h_in (T,B,P)`` what multiplied ``W_hh`` (after recurrent dropout); ``c_new (T,B,H)``
the cell before zoneout; ``c_out (T,B,H)`` what went into the output tanh; ``c_hat, rstd_c``
and ``r_hat, rstd_hh`` for the layer norms; ``m (T,B,H)`` the unprojected output.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lstmkit.reference.lstm import CellOptions

# Positional order of the tensor arguments of the recurrence, shared by every backend.
RECURRENCE_ARGS = (
    "xg",  # (T, B, 4H)
    "h0",  # (B, P)
    "c0",  # (B, H)
    "weight_hh",  # (4H, P)
    "bias_hh",  # (4H,)
    "weight_hr",  # (P, H)
    "weight_ci",  # (H,)
    "weight_cf",  # (H,)
    "weight_co",  # (H,)
    "ln_weight_hh",  # (4H,)
    "ln_weight_c",  # (H,)
    "ln_bias_c",  # (H,)
    "zoneout_h",  # (T, B, P)
    "zoneout_c",  # (T, B, H)
    "dropout_h",  # (B, P)
)
N_GRAD_ARGS = 12  # xg .. ln_bias_c carry gradients; the masks do not


def check_recurrence_args(
    args: tuple[Tensor | None, ...], batch_sizes: Tensor | None, opts: CellOptions
) -> None:
    """Raise ValueError/TypeError unless ``args`` (:data:`RECURRENCE_ARGS` order) and
    ``batch_sizes`` are what every backend assumes.

    The kernels take raw pointers: one dtype and device for all tensors, strided layout, these
    shapes, and ``batch_sizes`` a CPU int64 ``(T,)`` with entries in ``[0, B]`` (the Triton
    kernels index memory with it unchecked). Contiguity is not required: every backend makes
    its own contiguous copies. Only metadata is read, plus two reductions over ``batch_sizes``.
    """
    if len(args) != len(RECURRENCE_ARGS):
        raise TypeError(f"the recurrence takes {len(RECURRENCE_ARGS)} tensors, got {len(args)}")
    xg = args[0]
    if not torch.is_tensor(xg):
        raise TypeError(f"xg must be a tensor, got {type(xg).__name__}")
    if xg.dim() != 3 or xg.shape[2] == 0 or xg.shape[2] % 4:
        raise ValueError(f"xg must be (T, B, 4H) with H >= 1, got shape {tuple(xg.shape)}")
    if not xg.is_floating_point():
        raise TypeError(f"xg must be a floating-point tensor, got {xg.dtype}")
    T, B, G = xg.shape
    H = G // 4
    h0 = args[1]
    P = h0.shape[-1] if torch.is_tensor(h0) and h0.dim() == 2 else -1
    if P < 1:
        raise ValueError(
            f"h0 must be a (B, P) tensor with P >= 1, got {getattr(h0, 'shape', type(h0))}"
        )
    shapes = (
        (T, B, G),
        (B, P),
        (B, H),
        (G, P),
        (G,),
        (P, H),
        (H,),
        (H,),
        (H,),
        (G,),
        (H,),
        (H,),
        (T, B, P),
        (T, B, H),
        (B, P),
    )
    dtype, device = xg.dtype, xg.device
    for name, t, shape in zip(RECURRENCE_ARGS, args, shapes, strict=True):
        if t is None:
            if name in _REQUIRED:
                raise TypeError(f"{name} is required, got None")
            continue
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a tensor or None, got {type(t).__name__}")
        if t.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
        if t.dtype != dtype or t.device != device:
            raise TypeError(
                f"{name} is {t.dtype} on {t.device}, but xg is {dtype} on {device}; "
                "every recurrence tensor has the same dtype and device"
            )
        if t.layout != torch.strided:
            raise TypeError(f"{name} must be a dense (strided) tensor, got layout {t.layout}")
    if args[5] is None and P != H:
        raise ValueError(f"without weight_hr, h0 must have H = {H} features, got P = {P}")
    if args[10] is not None or args[9] is not None:
        eps = opts.layer_norm_eps
        if not (isinstance(eps, float) and math.isfinite(eps) and eps > 0):
            raise ValueError(f"layer_norm_eps must be a positive finite float, got {eps!r}")
    if batch_sizes is None:
        return
    bs = batch_sizes
    if not torch.is_tensor(bs) or bs.dim() != 1 or bs.dtype != torch.int64 or bs.is_cuda:
        raise ValueError(
            "batch_sizes must be a 1-D int64 CPU tensor, got "
            + (
                f"{bs.dim()}-D {bs.dtype} on {bs.device}"
                if torch.is_tensor(bs)
                else type(bs).__name__
            )
        )
    if bs.device.type != "cpu" or bs.shape[0] != T:
        raise ValueError(f"batch_sizes must be a CPU tensor of shape (T,) = ({T},), got {bs.shape}")
    vals = bs.tolist()
    if vals and (min(vals) < 0 or max(vals) > B):
        raise ValueError(f"batch_sizes must be in [0, B = {B}], got {vals}")


_REQUIRED = frozenset(("xg", "h0", "c0", "weight_hh"))


def _ln_forward(x: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    rstd = torch.rsqrt(var + eps)
    return (x - mu) * rstd, rstd


def _ln_backward(dx_hat: Tensor, x_hat: Tensor, rstd: Tensor) -> Tensor:
    """Adjoint of ``x_hat = (x - mean) * rstd`` given ``d x_hat``."""
    mean_d = dx_hat.mean(-1, keepdim=True)
    mean_dx = (dx_hat * x_hat).mean(-1, keepdim=True)
    return rstd * (dx_hat - mean_d - x_hat * mean_dx)


def _steps(T: int, reverse: bool) -> range:
    return range(T - 1, -1, -1) if reverse else range(T)


def _active(batch_sizes: Tensor | None, t: int, B: int) -> int:
    return B if batch_sizes is None else int(batch_sizes[t])


def recurrence_forward(
    args: tuple[Tensor | None, ...],
    batch_sizes: Tensor | None,
    reverse: bool,
    opts: CellOptions,
    save: bool,
) -> tuple[Tensor, Tensor, Tensor, dict[str, Tensor]]:
    """The forward scan; returns ``out, h_n, c_n`` and the tensors the backward needs."""
    (xg, h0, c0, w_hh, b_hh, w_hr, w_ci, w_cf, w_co, ln_hh, ln_c_w, ln_c_b, zh, zc, dmask) = args
    T, B, G = xg.shape
    H = G // 4
    P = h0.shape[1]
    h, c = h0.clone(), c0.clone()
    out = xg.new_zeros(T, B, P)
    s: dict[str, Tensor] = {}
    if save:
        s["gates"] = xg.new_zeros(T, B, G)
        s["c_prev"] = xg.new_zeros(T, B, H)
        s["h_in"] = xg.new_zeros(T, B, P)
        s["c_new"] = xg.new_zeros(T, B, H)
        s["c_out"] = xg.new_zeros(T, B, H)
        if ln_hh is not None:
            s["r_hat"] = xg.new_zeros(T, B, G)
            s["rstd_hh"] = xg.new_zeros(T, B, 1)
        if ln_c_w is not None:
            s["c_hat"] = xg.new_zeros(T, B, H)
            s["rstd_c"] = xg.new_zeros(T, B, 1)
        if w_hr is not None:
            s["m"] = xg.new_zeros(T, B, H)
    for t in _steps(T, reverse):
        n = _active(batch_sizes, t, B)
        hp, cp = h[:n], c[:n]
        h_in = hp if dmask is None else hp * dmask[:n]
        r = h_in @ w_hh.T
        if ln_hh is not None:
            r_hat, rstd_hh = _ln_forward(r, opts.layer_norm_eps)
            r = r_hat * ln_hh
        gates = xg[t, :n] + r
        if b_hh is not None:
            gates = gates + b_hh
        i_pre, f_pre, g_pre, o_pre = gates.chunk(4, 1)
        if w_ci is not None:
            i_pre = i_pre + w_ci * cp
            f_pre = f_pre + w_cf * cp
        i, g = torch.sigmoid(i_pre), torch.tanh(g_pre)
        if opts.coupled:
            f = 1.0 - i
        elif not opts.forget_gate:
            f = torch.ones_like(i)
        else:
            f = torch.sigmoid(f_pre)
        c_new = f * cp + i * g
        if w_co is not None:
            o_pre = o_pre + w_co * c_new
        o = torch.sigmoid(o_pre)
        if ln_c_w is not None:
            c_hat, rstd_c = _ln_forward(c_new, opts.layer_norm_eps)
            c_out = c_hat * ln_c_w + ln_c_b
        else:
            c_out = c_new
        m = o * torch.tanh(c_out)
        h_new = m if w_hr is None else m @ w_hr.T
        c_next = c_new if zc is None else zc[t, :n] * cp + (1 - zc[t, :n]) * c_new
        h_next = h_new if zh is None else zh[t, :n] * hp + (1 - zh[t, :n]) * h_new
        if save:
            s["gates"][t, :n] = torch.cat([i, f, g, o], 1)
            s["c_prev"][t, :n] = cp
            s["h_in"][t, :n] = h_in
            s["c_new"][t, :n] = c_new
            s["c_out"][t, :n] = c_out
            if ln_hh is not None:
                s["r_hat"][t, :n] = r_hat
                s["rstd_hh"][t, :n] = rstd_hh
            if ln_c_w is not None:
                s["c_hat"][t, :n] = c_hat
                s["rstd_c"][t, :n] = rstd_c
            if w_hr is not None:
                s["m"][t, :n] = m
        out[t, :n] = h_next
        h[:n] = h_next
        c[:n] = c_next
    return out, h, c, s


def recurrence_backward(
    args: tuple[Tensor | None, ...],
    s: dict[str, Tensor],
    dout: Tensor,  # (T, B, P)
    dh_n: Tensor,  # (B, P)
    dc_n: Tensor,  # (B, H)
    batch_sizes: Tensor | None,
    reverse: bool,
    opts: CellOptions,
) -> tuple[Tensor | None, ...]:
    """Gradients of ``xg, h0, c0`` and every weight, in :data:`RECURRENCE_ARGS` order."""
    (xg, h0, c0, w_hh, b_hh, w_hr, w_ci, w_cf, w_co, ln_hh, ln_c_w, ln_c_b, zh, zc, dmask) = args
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
        i, f, g, o = s["gates"][t, :n].chunk(4, 1)
        if w_hr is not None:
            dhn_all[t, :n] = dh_new
            dm = dh_new @ w_hr
        else:
            dm = dh_new
        tc = torch.tanh(s["c_out"][t, :n])
        do = dm * tc
        dc_out = dm * o * (1 - tc * tc)
        if ln_c_w is not None:
            c_hat = s["c_hat"][t, :n]
            dln_c_w += (dc_out * c_hat).sum(0)
            dln_c_b += dc_out.sum(0)
            dc_new = dc_new + _ln_backward(dc_out * ln_c_w, c_hat, s["rstd_c"][t, :n])
        else:
            dc_new = dc_new + dc_out
        do_pre = do * o * (1 - o)
        if w_co is not None:
            dc_new = dc_new + do_pre * w_co
            dw_co += (do_pre * s["c_new"][t, :n]).sum(0)
        cp = s["c_prev"][t, :n]
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
            r_hat = s["r_hat"][t, :n]
            dln_hh += (dgates * r_hat).sum(0)
            dr = _ln_backward(dgates * ln_hh, r_hat, s["rstd_hh"][t, :n])
        else:
            dr = dgates
        d_rec[t, :n] = dr
        dh_in = dr @ w_hh
        if dmask is not None:
            dh_in = dh_in * dmask[:n]
        dh[:n] = dh_in if dh_keep is None else dh_in + dh_keep
        dc[:n] = dcp
    dw_hh = d_rec.reshape(-1, G).T @ s["h_in"].reshape(-1, w_hh.shape[1])
    db_hh = dxg.sum((0, 1)) if b_hh is not None else None
    dw_hr = (
        dhn_all.reshape(-1, w_hr.shape[0]).T @ s["m"].reshape(-1, H) if w_hr is not None else None
    )
    return (dxg, dh, dc, dw_hh, db_hh, dw_hr, dw_ci, dw_cf, dw_co, dln_hh, dln_c_w, dln_c_b)


def stash_for_backward(ctx, batch_sizes, reverse, opts, args, saved: dict[str, Tensor]) -> None:
    """Keep what any recurrence backward needs on ``ctx`` (shared by every backend's Function)."""
    if saved:
        ctx.names = list(saved)
        ctx.save_for_backward(*args, *saved.values())
    ctx.meta = (batch_sizes, reverse, opts, len(args))


def unstash_for_backward(ctx) -> tuple:
    """``args, saved, batch_sizes, reverse, opts`` as :func:`stash_for_backward` kept them."""
    batch_sizes, reverse, opts, nargs = ctx.meta
    tensors = ctx.saved_tensors
    args, saved = tensors[:nargs], dict(zip(ctx.names, tensors[nargs:], strict=True))
    return args, saved, batch_sizes, reverse, opts


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

    ``forward(args, batch_sizes, reverse, opts, save) -> (out, h_n, c_n, saved)`` and
    ``backward(args, saved, dout, dh_n, dc_n, batch_sizes, reverse, opts, needs_grad) -> grads``
    (the 12 gradients of :data:`RECURRENCE_ARGS` ``xg .. ln_bias_c``). The Function is called
    as ``apply(batch_sizes, reverse, opts, *tensors)`` and returns ``out, h_n, c_n``; it saves
    tensors only when some input needs a gradient, and gives None for gradients nobody asked for.
    First derivatives only: differentiating its gradients raises :func:`double_backward_error`
    naming ``backend``.
    """

    def fwd(ctx, batch_sizes, reverse, opts, *args):
        check_recurrence_args(args, batch_sizes, opts)
        save = needs_recurrence_save(ctx)
        out, h_n, c_n, saved = forward(args, batch_sizes, reverse, opts, save)
        stash_for_backward(ctx, batch_sizes, reverse, opts, args, saved)
        return out, h_n, c_n

    def bwd(ctx, dout, dh_n, dc_n):
        args, saved, batch_sizes, reverse, opts = unstash_for_backward(ctx)
        needs = ctx.needs_input_grad[3 : 3 + N_GRAD_ARGS]

        def compute():
            grads = backward(args, saved, dout, dh_n, dc_n, batch_sizes, reverse, opts, needs)
            return tuple(g if n else None for g, n in zip(grads, needs, strict=True))

        if torch.is_grad_enabled():  # create_graph=True: a second derivative may follow
            grads = _first_order_grads(backend, compute, (*args, dout, dh_n, dc_n))
        else:
            grads = compute()
        return (None, None, None, *grads, *([None] * (len(args) - N_GRAD_ARGS)))

    return type(
        name,
        (torch.autograd.Function,),
        {"forward": staticmethod(fwd), "backward": staticmethod(bwd), "__doc__": doc},
    )


LSTMRecurrenceFunction = recurrence_function(
    "LSTMRecurrenceFunction",
    """Autograd wrapper of :func:`recurrence_forward` / :func:`recurrence_backward`.

    First derivatives only; ``backend="reference"`` (eager autograd) gives higher ones.
    ``apply(batch_sizes, reverse, opts, *tensors)`` with tensors in :data:`RECURRENCE_ARGS`
    order; returns ``out, h_n, c_n``.
    """,
    recurrence_forward,
    lambda args, saved, dout, dh_n, dc_n, bs, rev, opts, needs: recurrence_backward(
        args, saved, dout, dh_n, dc_n, bs, rev, opts
    ),
    backend="python",
)
