r"""Triton forward of the LSTM recurrence: a persistent kernel over the whole sequence.

Mirrors :func:`lstmkit.reference.lstm.recurrence_forward` step by step, every variant as a
``tl.constexpr`` switch of the one kernel. The input projection ``xg = x W_ih^T + b_ih`` is done
before (one large GEMM), as for the CPU kernel.

Dimensions::

    T        time steps
    B        batch rows; at step t only the first batch_sizes[t] are active (packed sequences)
    H        hidden units (cell state); 4H the stacked gates i|f|g|o
    P        size of h: the projection size, or H without projection
    HS, PS   the slice of H and of P one program owns: ceil(H / programs), ceil(P / programs)
    BLOCK_*  power-of-two tiles (at least 16, the smallest tl.dot) covering B, HS, PS, H, P

Work split: program ``p`` owns hidden units ``[p*HS, (p+1)*HS)`` for the whole sequence. It
keeps its rows of ``W_hh`` (four ``(P, HS)`` tiles, one per gate) and its cell state ``c`` on chip
across steps; ``h`` goes through a double-buffered float32 buffer in global memory, because step
``t+1`` needs all of ``h_t``. A grid-wide barrier separates the steps (a second one per step with
a projection: program ``p`` then also owns ``h`` columns ``[p*PS, (p+1)*PS)`` and needs all of
``m``). Arithmetic, the cell state and ``h`` between steps are float32 whatever the dtype;
``h`` (and ``m``) are rounded to the dtype only as matmul operands, as the reference does.

Launch modes (``mode=`` of :func:`triton_forward`): ``"persistent"`` runs the whole sequence in
one launch as above (``t_begin=0, n_steps=T, USE_BARRIER``). ``"stepwise"`` launches one step
per launch (``n_steps=1``, no barrier; with a projection two launches per step, ``PHASE`` 1 up to
``m`` and ``PHASE`` 2 from ``m`` to ``h``), the launch boundary acting as the barrier; ``c``
round-trips through global memory between launches (the kernel reads it from ``c0_ptr`` and
writes it to ``c_n_ptr``, the same buffer then). Stepwise needs no co-resident programs: a
fallback on GPUs that cannot hold them all, and how the interpreter tests several programs.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from lstmkit.kernels.triton._common import (
    grid_barrier,
    matmul,
    plan_launch,
    run_kernel,
    step_tensors,
    tanh,
    variant_switches,
)
from lstmkit.reference.options import CellOptions
from lstmkit.reference.recurrence import RecurrenceInputs, SavedTensors

__all__ = ["triton_forward"]


@triton.jit
def _lstm_fwd_kernel(
    xg_ptr,  # (T, B, 4H) dtype
    w_hh_ptr,  # (4H, P) dtype
    b_hh_ptr,  # (4H,)
    w_hr_ptr,  # (P, H)
    w_ci_ptr,  # (H,)
    w_cf_ptr,  # (H,)
    w_co_ptr,  # (H,)
    ln_hh_ptr,  # (4H,)
    ln_c_w_ptr,  # (H,)
    ln_c_b_ptr,  # (H,)
    zh_ptr,  # (T, B, P) zoneout keep-previous weights of h
    zc_ptr,  # (T, B, H)
    dmask_ptr,  # (B, P) recurrent dropout mask, scaled
    bs_ptr,  # (T,) int32 active rows per step
    c0_ptr,  # (B, H)
    out_ptr,  # (T, B, P) dtype, zero-filled: inactive rows output zeros
    h_buf_ptr,  # (2, B, P) float32; [0] holds h0, step s reads [s % 2] and writes the other
    c_n_ptr,  # (B, H) float32
    gates_ptr,  # (T, B, 4H) float32 saved, zero-filled like every saved tensor
    c_prev_ptr,  # (T, B, H)
    h_in_ptr,  # (T, B, P)
    c_new_ptr,  # (T, B, H)
    c_out_ptr,  # (T, B, H)
    r_hat_ptr,  # (T, B, 4H)
    rstd_hh_ptr,  # (T, B)
    c_hat_ptr,  # (T, B, H)
    rstd_c_ptr,  # (T, B)
    m_ptr,  # (T, B, H) float32, allocated with a projection even when not saved
    counter_ptr,  # (1,) int32 zero: the step barrier
    T,
    B,
    H,
    P,
    HS,
    PS,
    n_programs,
    eps,
    t_begin,  # the first step s this launch runs (step s is time T-1-s when REVERSE, else s)
    n_steps,  # how many steps it runs: T (persistent) or 1 (stepwise)
    USE_BARRIER: tl.constexpr,  # grid barriers between phases (persistent), or none (stepwise)
    PHASE: tl.constexpr,  # 0: whole steps; 1 / 2: only phase 1 (up to m) / 2 (h from m)
    REVERSE: tl.constexpr,
    HAS_BS: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_PROJ: tl.constexpr,
    HAS_PEEP_IF: tl.constexpr,
    HAS_PEEP_O: tl.constexpr,
    HAS_LN_HH: tl.constexpr,
    HAS_LN_C: tl.constexpr,
    HAS_ZH: tl.constexpr,
    HAS_ZC: tl.constexpr,
    HAS_DROPOUT: tl.constexpr,
    COUPLED: tl.constexpr,
    FORGET_GATE: tl.constexpr,
    SAVE: tl.constexpr,
    OP_DTYPE: tl.constexpr,
    DOT_F32: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_HS: tl.constexpr,
    BLOCK_PS: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    pid = tl.program_id(0)
    G = 4 * H
    rows = tl.arange(0, BLOCK_B)
    row_ok = rows < B
    hs = pid * HS + tl.arange(0, BLOCK_HS)  # this program's hidden units
    hs_ok = (tl.arange(0, BLOCK_HS) < HS) & (hs < H)
    pf = tl.arange(0, BLOCK_P)  # all of h
    pf_ok = pf < P
    m_bh = row_ok[:, None] & hs_ok[None, :]
    m_bp = row_ok[:, None] & pf_ok[None, :]

    # This program's rows of W_hh, transposed to (P, HS) per gate: on chip for the whole run.
    w_off = hs[None, :] * P + pf[:, None]
    w_msk = pf_ok[:, None] & hs_ok[None, :]
    w_i = tl.load(w_hh_ptr + 0 * H * P + w_off, mask=w_msk, other=0.0)
    w_f = tl.load(w_hh_ptr + 1 * H * P + w_off, mask=w_msk, other=0.0)
    w_g = tl.load(w_hh_ptr + 2 * H * P + w_off, mask=w_msk, other=0.0)
    w_o = tl.load(w_hh_ptr + 3 * H * P + w_off, mask=w_msk, other=0.0)
    if HAS_BIAS:
        b_i = tl.load(b_hh_ptr + 0 * H + hs, mask=hs_ok, other=0.0).to(tl.float32)
        b_f = tl.load(b_hh_ptr + 1 * H + hs, mask=hs_ok, other=0.0).to(tl.float32)
        b_g = tl.load(b_hh_ptr + 2 * H + hs, mask=hs_ok, other=0.0).to(tl.float32)
        b_o = tl.load(b_hh_ptr + 3 * H + hs, mask=hs_ok, other=0.0).to(tl.float32)
    if HAS_PEEP_IF:
        w_ci = tl.load(w_ci_ptr + hs, mask=hs_ok, other=0.0).to(tl.float32)
        w_cf = tl.load(w_cf_ptr + hs, mask=hs_ok, other=0.0).to(tl.float32)
    if HAS_PEEP_O:
        w_co = tl.load(w_co_ptr + hs, mask=hs_ok, other=0.0).to(tl.float32)
    if HAS_LN_HH:
        ln_i = tl.load(ln_hh_ptr + 0 * H + hs, mask=hs_ok, other=0.0).to(tl.float32)
        ln_f = tl.load(ln_hh_ptr + 1 * H + hs, mask=hs_ok, other=0.0).to(tl.float32)
        ln_g = tl.load(ln_hh_ptr + 2 * H + hs, mask=hs_ok, other=0.0).to(tl.float32)
        ln_o = tl.load(ln_hh_ptr + 3 * H + hs, mask=hs_ok, other=0.0).to(tl.float32)
    if HAS_LN_C:
        ln_c_w = tl.load(ln_c_w_ptr + hs, mask=hs_ok, other=0.0).to(tl.float32)
        ln_c_b = tl.load(ln_c_b_ptr + hs, mask=hs_ok, other=0.0).to(tl.float32)
    if HAS_DROPOUT:
        dmask = tl.load(dmask_ptr + rows[:, None] * P + pf[None, :], mask=m_bp, other=0.0)
        dmask = dmask.to(tl.float32)
    if HAS_PROJ:
        # This program's rows of W_hr, transposed to (H, PS): it computes h columns ps.
        ps = pid * PS + tl.arange(0, BLOCK_PS)
        ps_ok = (tl.arange(0, BLOCK_PS) < PS) & (ps < P)
        hf = tl.arange(0, BLOCK_H)
        hf_ok = hf < H
        w_hr = tl.load(
            w_hr_ptr + ps[None, :] * H + hf[:, None],
            mask=hf_ok[:, None] & ps_ok[None, :],
            other=0.0,
        )
        m_bps = row_ok[:, None] & ps_ok[None, :]
    else:
        ps = hs  # without a projection h = m: the same columns
        ps_ok = hs_ok
        m_bps = m_bh

    c = tl.load(c0_ptr + rows[:, None] * H + hs[None, :], mask=m_bh, other=0.0).to(tl.float32)
    barriers = 0
    s = t_begin
    while s < t_begin + n_steps:  # while: the interpreter cannot take a runtime range() bound here
        if REVERSE:
            t = T - 1 - s
        else:
            t = s
        if HAS_BS:
            n = tl.load(bs_ptr + t)
        else:
            n = B
        act = rows < n
        a_bh = act[:, None] & hs_ok[None, :]
        cur = h_buf_ptr + (s % 2) * B * P
        nxt = h_buf_ptr + ((s + 1) % 2) * B * P
        tbh = t * B * H + rows[:, None] * H + hs[None, :]  # (t, rows, hs) in a (T, B, H) tensor
        tbg = t * B * G + rows[:, None] * G + hs[None, :]  # (t, rows, hs) in a (T, B, 4H) tensor

        if PHASE != 2:  # phase 1: this program's hidden units up to m
            h_prev = tl.load(
                cur + rows[:, None] * P + pf[None, :], mask=m_bp, other=0.0, cache_modifier=".cg"
            )
            h_in = h_prev
            if HAS_DROPOUT:
                h_in = h_in * dmask
            if SAVE:
                if pid == 0:  # every program holds all of h_in; one stores it
                    tl.store(
                        h_in_ptr + t * B * P + rows[:, None] * P + pf[None, :],
                        h_in,
                        mask=act[:, None] & pf_ok[None, :],
                    )
            r_i = matmul(h_in, w_i, OP_DTYPE, DOT_F32)
            r_f = matmul(h_in, w_f, OP_DTYPE, DOT_F32)
            r_g = matmul(h_in, w_g, OP_DTYPE, DOT_F32)
            r_o = matmul(h_in, w_o, OP_DTYPE, DOT_F32)
            if HAS_LN_HH:  # over all 4H: this program owns every hidden unit (programs == 1)
                mean = (tl.sum(r_i, 1) + tl.sum(r_f, 1) + tl.sum(r_g, 1) + tl.sum(r_o, 1)) / G
                d_i = tl.where(hs_ok[None, :], r_i - mean[:, None], 0.0)
                d_f = tl.where(hs_ok[None, :], r_f - mean[:, None], 0.0)
                d_g = tl.where(hs_ok[None, :], r_g - mean[:, None], 0.0)
                d_o = tl.where(hs_ok[None, :], r_o - mean[:, None], 0.0)
                var = (tl.sum(d_i * d_i, 1) + tl.sum(d_f * d_f, 1) + tl.sum(d_g * d_g, 1)) + tl.sum(
                    d_o * d_o, 1
                )
                rstd_hh = tl.rsqrt(var / G + eps)
                r_i = d_i * rstd_hh[:, None]
                r_f = d_f * rstd_hh[:, None]
                r_g = d_g * rstd_hh[:, None]
                r_o = d_o * rstd_hh[:, None]
                if SAVE:
                    tl.store(r_hat_ptr + tbg + 0 * H, r_i, mask=a_bh)
                    tl.store(r_hat_ptr + tbg + 1 * H, r_f, mask=a_bh)
                    tl.store(r_hat_ptr + tbg + 2 * H, r_g, mask=a_bh)
                    tl.store(r_hat_ptr + tbg + 3 * H, r_o, mask=a_bh)
                    tl.store(rstd_hh_ptr + t * B + rows, rstd_hh, mask=act)
                r_i = r_i * ln_i[None, :]
                r_f = r_f * ln_f[None, :]
                r_g = r_g * ln_g[None, :]
                r_o = r_o * ln_o[None, :]
            x_off = xg_ptr + tbg
            i_pre = tl.load(x_off + 0 * H, mask=m_bh, other=0.0).to(tl.float32) + r_i
            f_pre = tl.load(x_off + 1 * H, mask=m_bh, other=0.0).to(tl.float32) + r_f
            g_pre = tl.load(x_off + 2 * H, mask=m_bh, other=0.0).to(tl.float32) + r_g
            o_pre = tl.load(x_off + 3 * H, mask=m_bh, other=0.0).to(tl.float32) + r_o
            if HAS_BIAS:
                i_pre += b_i[None, :]
                f_pre += b_f[None, :]
                g_pre += b_g[None, :]
                o_pre += b_o[None, :]
            c_prev = c
            if HAS_PEEP_IF:
                i_pre += w_ci[None, :] * c_prev
                f_pre += w_cf[None, :] * c_prev
            i = tl.sigmoid(i_pre)
            g = tanh(g_pre)
            if COUPLED:
                f = 1.0 - i
            elif FORGET_GATE:
                f = tl.sigmoid(f_pre)
            else:
                f = tl.full(i.shape, 1.0, tl.float32)
            c_new = f * c_prev + i * g
            if HAS_PEEP_O:
                o_pre += w_co[None, :] * c_new
            o = tl.sigmoid(o_pre)
            if HAS_LN_C:  # over H: this program owns every hidden unit (programs == 1)
                mean_c = tl.sum(tl.where(hs_ok[None, :], c_new, 0.0), 1) / H
                d_c = tl.where(hs_ok[None, :], c_new - mean_c[:, None], 0.0)
                rstd_c = tl.rsqrt(tl.sum(d_c * d_c, 1) / H + eps)
                c_hat = d_c * rstd_c[:, None]
                c_out = c_hat * ln_c_w[None, :] + ln_c_b[None, :]
            else:
                c_out = c_new
            m = o * tanh(c_out)
            if HAS_ZC:
                zc = tl.load(zc_ptr + tbh, mask=m_bh, other=0.0).to(tl.float32)
                c_next = zc * c_prev + (1.0 - zc) * c_new
            else:
                c_next = c_new
            if SAVE:
                tl.store(gates_ptr + tbg + 0 * H, i, mask=a_bh)
                tl.store(gates_ptr + tbg + 1 * H, f, mask=a_bh)
                tl.store(gates_ptr + tbg + 2 * H, g, mask=a_bh)
                tl.store(gates_ptr + tbg + 3 * H, o, mask=a_bh)
                tl.store(c_prev_ptr + tbh, c_prev, mask=a_bh)
                tl.store(c_new_ptr + tbh, c_new, mask=a_bh)
                tl.store(c_out_ptr + tbh, c_out, mask=a_bh)
                if HAS_LN_C:
                    tl.store(c_hat_ptr + tbh, c_hat, mask=a_bh)
                    tl.store(rstd_c_ptr + t * B + rows, rstd_c, mask=act)
            c = tl.where(act[:, None], c_next, c)  # inactive rows keep their state
            if HAS_PROJ:
                tl.store(m_ptr + tbh, m, mask=a_bh)
        if HAS_PROJ:
            if USE_BARRIER:
                barriers += 1
                grid_barrier(counter_ptr, barriers * n_programs)  # all of m_t is written
        if PHASE != 1:  # phase 2: this program's columns of h (all of it without projection)
            if HAS_PROJ:
                m_all = tl.load(
                    m_ptr + t * B * H + rows[:, None] * H + hf[None, :],
                    mask=row_ok[:, None] & hf_ok[None, :],
                    other=0.0,
                    cache_modifier=".cg",
                )
                h_new = matmul(m_all, w_hr, OP_DTYPE, DOT_F32)
            else:
                h_new = m
            h_own = tl.load(cur + rows[:, None] * P + ps[None, :], mask=m_bps, other=0.0)
            if HAS_ZH:
                zh = tl.load(
                    zh_ptr + t * B * P + rows[:, None] * P + ps[None, :], mask=m_bps, other=0.0
                ).to(tl.float32)
                h_next = zh * h_own + (1.0 - zh) * h_new
            else:
                h_next = h_new
            tl.store(
                out_ptr + t * B * P + rows[:, None] * P + ps[None, :],
                h_next.to(out_ptr.dtype.element_ty),
                mask=act[:, None] & ps_ok[None, :],
            )
            tl.store(
                nxt + rows[:, None] * P + ps[None, :],
                tl.where(act[:, None], h_next, h_own),
                mask=m_bps,
            )
        if USE_BARRIER:
            barriers += 1
            grid_barrier(counter_ptr, barriers * n_programs)  # all of h_t is written
        s += 1
    if PHASE != 2:
        tl.store(c_n_ptr + rows[:, None] * H + hs[None, :], c, mask=m_bh)


def triton_forward(
    inputs: RecurrenceInputs,
    batch_sizes: Tensor | None,
    reverse: bool,
    opts: CellOptions,
    save: bool = True,
    programs: int | None = None,
    mode: str = "persistent",
) -> tuple[Tensor, Tensor, Tensor, SavedTensors | None]:
    """:func:`lstmkit.reference.lstm.recurrence_forward` as one persistent Triton kernel.

    Returns ``out (T, B, P), h_n (B, P), c_n (B, H)`` in the dtype of ``xg`` and, when ``save``,
    the reference's :class:`~lstmkit.reference.recurrence.SavedTensors` (else None), in float32
    (the backward reads them in float32 whatever the dtype). ``programs``: how many programs
    split the hidden units (see :func:`~lstmkit.kernels.triton._common.resolve_programs`; 1 in
    the interpreter unless stepwise).

    ``mode="persistent"``: one launch for the whole sequence, ``c`` on chip, grid-wide barriers
    between steps (every program must be resident at once). ``mode="stepwise"``: one launch per
    step (two with a projection: up to ``m``, then ``h``), the launch boundary acting as the
    barrier and ``c`` going through global memory between launches. Slower (a launch per step,
    ``W_hh`` reloaded each time) but it needs no co-residency: a fallback on GPUs where all the
    programs cannot run at once, and the way the interpreter tests more than one program.
    """
    xg, h0, c0, w_hh, b_hh = inputs.xg, inputs.h0, inputs.c0, inputs.weight_hh, inputs.bias_hh
    w_hr, w_ci, w_cf, w_co = inputs.weight_hr, inputs.weight_ci, inputs.weight_cf, inputs.weight_co
    ln_hh, ln_c_w, ln_c_b = inputs.ln_weight_hh, inputs.ln_weight_c, inputs.ln_bias_c
    zh, zc, dmask = inputs.zoneout_h, inputs.zoneout_c, inputs.dropout_h
    launch = plan_launch(inputs, opts, programs, mode)
    if ln_c_w is not None and ln_c_b is None:
        raise ValueError("ln_weight_c needs ln_bias_c (the reference adds it)")
    T, B, H, P, HS, PS, n_prog, stepwise = launch
    G = 4 * H
    dev, f32 = xg.device, torch.float32

    def c(x: Tensor | None) -> Tensor:
        return xg if x is None else x.contiguous()  # an unused pointer for absent tensors

    def z(*shape: int, on: bool = True) -> Tensor:
        return torch.zeros(shape if on else (1,), device=dev, dtype=f32)

    out = torch.zeros(T, B, P, device=dev, dtype=xg.dtype)
    h_buf = torch.zeros(2, B, P, device=dev, dtype=f32)
    h_buf[0] = h0
    if stepwise:  # c between launches: each reads it from c0_ptr and writes it to c_n_ptr
        c_n = c0.to(f32).contiguous().clone()
    else:
        c_n = torch.zeros(B, H, device=dev, dtype=f32)
    saved = {}
    if save:
        saved = {
            "gates": z(T, B, G),
            "c_prev": z(T, B, H),
            "h_in": z(T, B, P),
            "c_new": z(T, B, H),
            "c_out": z(T, B, H),
        }
        if ln_hh is not None:
            saved["r_hat"] = z(T, B, G)
            saved["rstd_hh"] = z(T, B, 1)
        if ln_c_w is not None:
            saved["c_hat"] = z(T, B, H)
            saved["rstd_c"] = z(T, B, 1)
    m_buf = z(T, B, H, on=w_hr is not None)
    if w_hr is not None and save:
        saved["m"] = m_buf
    dummy = z(1)
    bs, counter = step_tensors(batch_sizes, dummy)
    kargs = (
        c(xg),
        c(w_hh),
        c(b_hh),
        c(w_hr),
        c(w_ci),
        c(w_cf),
        c(w_co),
        c(ln_hh),
        c(ln_c_w),
        c(ln_c_b),
        c(zh),
        c(zc),
        c(dmask),
        bs,
        c_n if stepwise else c(c0),
        out,
        h_buf,
        c_n,
        *(saved.get(k, dummy) for k in ("gates", "c_prev", "h_in", "c_new", "c_out")),
        *(saved.get(k, dummy) for k in ("r_hat", "rstd_hh", "c_hat", "rstd_c")),
        m_buf,
        counter,
        T,
        B,
        H,
        P,
        HS,
        PS,
        n_prog,
        float(opts.layer_norm_eps),
    )
    switches = variant_switches(inputs, batch_sizes, reverse, opts, launch)
    switches.update(HAS_BIAS=b_hh is not None, SAVE=bool(save))
    run_kernel(_lstm_fwd_kernel, kargs, switches, launch, (1, 2) if w_hr is not None else (0,))
    h_n = h_buf[T % 2].to(xg.dtype)
    return out, h_n, c_n.to(xg.dtype), SavedTensors(**saved) if save else None
