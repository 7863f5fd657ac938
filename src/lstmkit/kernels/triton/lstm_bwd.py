r"""Triton backward of the LSTM recurrence: a persistent kernel over the whole sequence.

Mirrors :func:`lstmkit.reference.backward.recurrence_backward` step by step, every variant as a
``tl.constexpr`` switch of the one kernel; ``dW_hh`` and ``dW_hr`` are one torch GEMM each after
the loop, over the ``d_rec`` and ``dh_new`` the kernel stores, as on the CPU.

Dimensions::

    T        time steps
    B        batch rows; at step t only the first batch_sizes[t] are active (packed sequences)
    H        hidden units (cell state); 4H the stacked gates i|f|g|o
    P        size of h: the projection size, or H without projection
    HS, PS   the slice of H and of P one program owns: ceil(H / programs), ceil(P / programs)
    BLOCK_*  power-of-two tiles (at least 16, the smallest tl.dot) covering B, HS, PS, H, P

Work split, per step going back in time: phase 1, program ``p`` turns ``dh, dc`` into the
adjoints of its hidden units ``[p*HS, (p+1)*HS)`` (``dc`` stays on chip, as ``c`` does in the
forward) and stores its part of ``d_rec``, the adjoint of ``h_in W_hh^T``; after a grid-wide
barrier, phase 2, it computes ``dh_{t-1}`` columns ``[p*PS, (p+1)*PS)`` from all of ``d_rec_t``
and its columns of ``W_hh`` (on chip for the whole run). With a projection every program needs
all of ``dh`` in phase 1, so a second barrier closes the step. Everything is float32 inside.

Launch modes (``mode=`` of :func:`triton_backward`): ``"persistent"`` as above (``t_begin=0,
n_steps=T, USE_BARRIER``); ``"stepwise"`` launches phase 1 and phase 2 of each step separately
(``n_steps=1``, ``PHASE`` 1 / 2, no barrier), the launch boundary acting as the barrier. ``dc``
then round-trips through global memory (read from ``dc_n_ptr``, written to ``dc_ptr``, the same
buffer), and so do the running sums of the peephole and layer-norm weight gradients (each
launch resumes from the output buffers instead of zeros). Each program's partial sums cover only
its own hidden units, so no cross-program reduction is needed.
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
from lstmkit.reference.recurrence import (
    GRAD_FIELDS,
    N_GRAD_ARGS,
    RecurrenceGrads,
    RecurrenceInputs,
    SavedTensors,
)

__all__ = ["triton_backward"]


@triton.jit
def acc_init(ptr, mask, BLOCK: tl.constexpr, FRESH: tl.constexpr):
    """A running sum's start: zeros (persistent), or its value so far in global memory."""
    if FRESH:
        acc = tl.zeros((BLOCK,), tl.float32)
    else:
        acc = tl.load(ptr, mask=mask, other=0.0)
    return acc


@triton.jit
def _lstm_bwd_kernel(
    w_hh_ptr,  # (4H, P) dtype
    w_hr_ptr,  # (P, H)
    w_ci_ptr,  # (H,)
    w_cf_ptr,  # (H,)
    w_co_ptr,  # (H,)
    ln_hh_ptr,  # (4H,)
    ln_c_w_ptr,  # (H,)
    zh_ptr,  # (T, B, P)
    zc_ptr,  # (T, B, H)
    dmask_ptr,  # (B, P)
    bs_ptr,  # (T,) int32
    gates_ptr,  # (T, B, 4H) float32 saved by the forward
    c_prev_ptr,  # (T, B, H)
    c_new_ptr,  # (T, B, H)
    c_out_ptr,  # (T, B, H)
    r_hat_ptr,  # (T, B, 4H)
    rstd_hh_ptr,  # (T, B)
    c_hat_ptr,  # (T, B, H)
    rstd_c_ptr,  # (T, B)
    dout_ptr,  # (T, B, P) any float dtype
    dc_n_ptr,  # (B, H)
    dh_buf_ptr,  # (2, B, P) float32; [0] holds dh_n, step s reads [s % 2] and writes the other
    dc_ptr,  # (B, H) float32 out: dc0
    dxg_ptr,  # (T, B, 4H) float32 zero-filled out: d gates (pre-activation)
    d_rec_ptr,  # (T, B, 4H) float32 zero-filled: d (h_in W_hh^T); dxg itself without LN_hh
    dhn_ptr,  # (T, B, P) float32 zero-filled: d h_new, for dW_hr (projection only)
    dw_ci_ptr,  # (H,) float32 out
    dw_cf_ptr,  # (H,)
    dw_co_ptr,  # (H,)
    dln_hh_ptr,  # (4H,)
    dln_c_w_ptr,  # (H,)
    dln_c_b_ptr,  # (H,)
    counter_ptr,  # (1,) int32 zero: the step barrier
    T,
    B,
    H,
    P,
    HS,
    PS,
    n_programs,
    t_begin,  # the first step s this launch runs (step s is time s when REVERSE, else T-1-s)
    n_steps,  # how many steps it runs: T (persistent) or 1 (stepwise)
    USE_BARRIER: tl.constexpr,  # grid barriers between phases (persistent), or none (stepwise)
    PHASE: tl.constexpr,  # 0: whole steps; 1 / 2: only phase 1 (adjoints) / 2 (dh_{t-1})
    REVERSE: tl.constexpr,
    HAS_BS: tl.constexpr,
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
    hs = pid * HS + tl.arange(0, BLOCK_HS)  # this program's hidden units (phase 1)
    hs_ok = (tl.arange(0, BLOCK_HS) < HS) & (hs < H)
    ps = pid * PS + tl.arange(0, BLOCK_PS)  # this program's columns of dh (phase 2)
    ps_ok = (tl.arange(0, BLOCK_PS) < PS) & (ps < P)
    hf = tl.arange(0, BLOCK_H)
    hf_ok = hf < H
    pf = tl.arange(0, BLOCK_P)
    pf_ok = pf < P
    m_bh = row_ok[:, None] & hs_ok[None, :]
    m_bps = row_ok[:, None] & ps_ok[None, :]

    # Columns ps of W_hh, one (H, PS) tile per gate, on chip for the whole run.
    w_off = hf[:, None] * P + ps[None, :]
    w_msk = hf_ok[:, None] & ps_ok[None, :]
    w_i = tl.load(w_hh_ptr + 0 * H * P + w_off, mask=w_msk, other=0.0)
    w_f = tl.load(w_hh_ptr + 1 * H * P + w_off, mask=w_msk, other=0.0)
    w_g = tl.load(w_hh_ptr + 2 * H * P + w_off, mask=w_msk, other=0.0)
    w_o = tl.load(w_hh_ptr + 3 * H * P + w_off, mask=w_msk, other=0.0)
    if HAS_PROJ:  # columns hs of W_hr, (P, HS): dm = dh_new W_hr
        w_hr = tl.load(
            w_hr_ptr + pf[:, None] * H + hs[None, :],
            mask=pf_ok[:, None] & hs_ok[None, :],
            other=0.0,
        )
    if HAS_PEEP_IF:
        w_ci = tl.load(w_ci_ptr + hs, mask=hs_ok, other=0.0).to(tl.float32)
        w_cf = tl.load(w_cf_ptr + hs, mask=hs_ok, other=0.0).to(tl.float32)
        dw_ci = acc_init(dw_ci_ptr + hs, hs_ok, BLOCK_HS, USE_BARRIER)
        dw_cf = acc_init(dw_cf_ptr + hs, hs_ok, BLOCK_HS, USE_BARRIER)
    if HAS_PEEP_O:
        w_co = tl.load(w_co_ptr + hs, mask=hs_ok, other=0.0).to(tl.float32)
        dw_co = acc_init(dw_co_ptr + hs, hs_ok, BLOCK_HS, USE_BARRIER)
    if HAS_LN_HH:
        ln_i = tl.load(ln_hh_ptr + 0 * H + hs, mask=hs_ok, other=0.0).to(tl.float32)
        ln_f = tl.load(ln_hh_ptr + 1 * H + hs, mask=hs_ok, other=0.0).to(tl.float32)
        ln_g = tl.load(ln_hh_ptr + 2 * H + hs, mask=hs_ok, other=0.0).to(tl.float32)
        ln_o = tl.load(ln_hh_ptr + 3 * H + hs, mask=hs_ok, other=0.0).to(tl.float32)
        dln_i = acc_init(dln_hh_ptr + 0 * H + hs, hs_ok, BLOCK_HS, USE_BARRIER)
        dln_f = acc_init(dln_hh_ptr + 1 * H + hs, hs_ok, BLOCK_HS, USE_BARRIER)
        dln_g = acc_init(dln_hh_ptr + 2 * H + hs, hs_ok, BLOCK_HS, USE_BARRIER)
        dln_o = acc_init(dln_hh_ptr + 3 * H + hs, hs_ok, BLOCK_HS, USE_BARRIER)
    if HAS_LN_C:
        ln_c_w = tl.load(ln_c_w_ptr + hs, mask=hs_ok, other=0.0).to(tl.float32)
        dln_c_w = acc_init(dln_c_w_ptr + hs, hs_ok, BLOCK_HS, USE_BARRIER)
        dln_c_b = acc_init(dln_c_b_ptr + hs, hs_ok, BLOCK_HS, USE_BARRIER)
    if HAS_DROPOUT:
        dmask = tl.load(dmask_ptr + rows[:, None] * P + ps[None, :], mask=m_bps, other=0.0)
        dmask = dmask.to(tl.float32)

    dc = tl.load(dc_n_ptr + rows[:, None] * H + hs[None, :], mask=m_bh, other=0.0).to(tl.float32)
    barriers = 0
    s = t_begin
    while s < t_begin + n_steps:  # while: the interpreter cannot take a runtime range() bound here
        if REVERSE:  # the forward went T-1 .. 0, so its backward goes 0 .. T-1
            t = s
        else:
            t = T - 1 - s
        if HAS_BS:
            n = tl.load(bs_ptr + t)
        else:
            n = B
        act = rows < n
        a_bh = act[:, None] & hs_ok[None, :]
        cur = dh_buf_ptr + (s % 2) * B * P
        nxt = dh_buf_ptr + ((s + 1) % 2) * B * P
        tbh = t * B * H + rows[:, None] * H + hs[None, :]
        tbg = t * B * G + rows[:, None] * G + hs[None, :]

        if PHASE != 2:
            if HAS_PROJ:  # every program needs all of dh_new
                a_bp = act[:, None] & pf_ok[None, :]
                off = rows[:, None] * P + pf[None, :]
                dh_t = tl.load(cur + off, mask=a_bp, other=0.0, cache_modifier=".cg")
                dh_t += tl.load(dout_ptr + t * B * P + off, mask=a_bp, other=0.0).to(tl.float32)
                if HAS_ZH:
                    zh = tl.load(zh_ptr + t * B * P + off, mask=a_bp, other=0.0).to(tl.float32)
                    dh_new = (1.0 - zh) * dh_t
                else:
                    dh_new = dh_t
                if pid == 0:  # every program holds all of dh_new; one stores it
                    tl.store(dhn_ptr + t * B * P + off, dh_new, mask=a_bp)
                dm = matmul(dh_new, w_hr, OP_DTYPE, DOT_F32)
            else:
                off = rows[:, None] * P + hs[None, :]
                dh_t = tl.load(cur + off, mask=a_bh, other=0.0)
                dh_t += tl.load(dout_ptr + t * B * P + off, mask=a_bh, other=0.0).to(tl.float32)
                if HAS_ZH:
                    zh = tl.load(zh_ptr + t * B * P + off, mask=a_bh, other=0.0).to(tl.float32)
                    dm = (1.0 - zh) * dh_t
                else:
                    dm = dh_t
            dc_t = tl.where(a_bh, dc, 0.0)
            if HAS_ZC:
                zc = tl.load(zc_ptr + tbh, mask=a_bh, other=0.0).to(tl.float32)
                dc_new = (1.0 - zc) * dc_t
            else:
                dc_new = dc_t
            i = tl.load(gates_ptr + tbg + 0 * H, mask=a_bh, other=0.0)
            f = tl.load(gates_ptr + tbg + 1 * H, mask=a_bh, other=0.0)
            g = tl.load(gates_ptr + tbg + 2 * H, mask=a_bh, other=0.0)
            o = tl.load(gates_ptr + tbg + 3 * H, mask=a_bh, other=0.0)
            tc = tanh(tl.load(c_out_ptr + tbh, mask=a_bh, other=0.0))
            do = dm * tc
            dc_out = dm * o * (1.0 - tc * tc)
            if HAS_LN_C:  # over H: this program owns every hidden unit (programs == 1)
                c_hat = tl.load(c_hat_ptr + tbh, mask=a_bh, other=0.0)
                rstd_c = tl.load(rstd_c_ptr + t * B + rows, mask=act, other=0.0)
                dln_c_w += tl.sum(dc_out * c_hat, 0)
                dln_c_b += tl.sum(dc_out, 0)
                dx = dc_out * ln_c_w[None, :]
                mean_d = tl.sum(dx, 1) / H
                mean_dx = tl.sum(dx * c_hat, 1) / H
                dc_new += rstd_c[:, None] * (dx - mean_d[:, None] - c_hat * mean_dx[:, None])
            else:
                dc_new += dc_out
            do_pre = do * o * (1.0 - o)
            if HAS_PEEP_O:
                dc_new += do_pre * w_co[None, :]
                dw_co += tl.sum(do_pre * tl.load(c_new_ptr + tbh, mask=a_bh, other=0.0), 0)
            cp = tl.load(c_prev_ptr + tbh, mask=a_bh, other=0.0)
            di = dc_new * g
            dg = dc_new * i
            df = dc_new * cp
            dcp = dc_new * f
            if HAS_ZC:
                dcp += zc * dc_t
            if COUPLED:
                di = di - df
                df_pre = tl.zeros(df.shape, tl.float32)
            elif FORGET_GATE:
                df_pre = df * f * (1.0 - f)
            else:
                df_pre = tl.zeros(df.shape, tl.float32)
            di_pre = tl.where(a_bh, di * i * (1.0 - i), 0.0)
            dg_pre = tl.where(a_bh, dg * (1.0 - g * g), 0.0)
            df_pre = tl.where(a_bh, df_pre, 0.0)
            do_pre = tl.where(a_bh, do_pre, 0.0)
            if HAS_PEEP_IF:
                dcp += di_pre * w_ci[None, :] + df_pre * w_cf[None, :]
                dw_ci += tl.sum(di_pre * cp, 0)
                dw_cf += tl.sum(df_pre * cp, 0)
            tl.store(dxg_ptr + tbg + 0 * H, di_pre, mask=a_bh)
            tl.store(dxg_ptr + tbg + 1 * H, df_pre, mask=a_bh)
            tl.store(dxg_ptr + tbg + 2 * H, dg_pre, mask=a_bh)
            tl.store(dxg_ptr + tbg + 3 * H, do_pre, mask=a_bh)
            if HAS_LN_HH:  # over all 4H: this program owns every hidden unit (programs == 1)
                rh_i = tl.load(r_hat_ptr + tbg + 0 * H, mask=a_bh, other=0.0)
                rh_f = tl.load(r_hat_ptr + tbg + 1 * H, mask=a_bh, other=0.0)
                rh_g = tl.load(r_hat_ptr + tbg + 2 * H, mask=a_bh, other=0.0)
                rh_o = tl.load(r_hat_ptr + tbg + 3 * H, mask=a_bh, other=0.0)
                rstd_hh = tl.load(rstd_hh_ptr + t * B + rows, mask=act, other=0.0)
                dln_i += tl.sum(di_pre * rh_i, 0)
                dln_f += tl.sum(df_pre * rh_f, 0)
                dln_g += tl.sum(dg_pre * rh_g, 0)
                dln_o += tl.sum(do_pre * rh_o, 0)
                dx_i = di_pre * ln_i[None, :]
                dx_f = df_pre * ln_f[None, :]
                dx_g = dg_pre * ln_g[None, :]
                dx_o = do_pre * ln_o[None, :]
                mean_d = (tl.sum(dx_i, 1) + tl.sum(dx_f, 1) + tl.sum(dx_g, 1) + tl.sum(dx_o, 1)) / G
                mean_dx = (
                    tl.sum(dx_i * rh_i, 1) + tl.sum(dx_f * rh_f, 1) + tl.sum(dx_g * rh_g, 1)
                ) + tl.sum(dx_o * rh_o, 1)
                mean_dx = mean_dx / G
                r = rstd_hh[:, None]
                md = mean_d[:, None]
                mdx = mean_dx[:, None]
                tl.store(d_rec_ptr + tbg + 0 * H, r * (dx_i - md - rh_i * mdx), mask=a_bh)
                tl.store(d_rec_ptr + tbg + 1 * H, r * (dx_f - md - rh_f * mdx), mask=a_bh)
                tl.store(d_rec_ptr + tbg + 2 * H, r * (dx_g - md - rh_g * mdx), mask=a_bh)
                tl.store(d_rec_ptr + tbg + 3 * H, r * (dx_o - md - rh_o * mdx), mask=a_bh)
            dc = tl.where(act[:, None], dcp, dc)  # inactive rows keep their adjoint
        if USE_BARRIER:
            barriers += 1
            grid_barrier(counter_ptr, barriers * n_programs)  # all of d_rec_t is written

        # ---- phase 2: dh_{t-1} columns ps = d_rec_t W_hh (* dropout mask) + zoneout keep
        if PHASE != 1:
            rec = d_rec_ptr + t * B * G + rows[:, None] * G + hf[None, :]
            m_bH = row_ok[:, None] & hf_ok[None, :]
            dr_i = tl.load(rec + 0 * H, mask=m_bH, other=0.0, cache_modifier=".cg")
            dr_f = tl.load(rec + 1 * H, mask=m_bH, other=0.0, cache_modifier=".cg")
            dr_g = tl.load(rec + 2 * H, mask=m_bH, other=0.0, cache_modifier=".cg")
            dr_o = tl.load(rec + 3 * H, mask=m_bH, other=0.0, cache_modifier=".cg")
            dh_in = matmul(dr_i, w_i, OP_DTYPE, DOT_F32) + matmul(dr_f, w_f, OP_DTYPE, DOT_F32)
            dh_in += matmul(dr_g, w_g, OP_DTYPE, DOT_F32) + matmul(dr_o, w_o, OP_DTYPE, DOT_F32)
            if HAS_DROPOUT:
                dh_in = dh_in * dmask
            off_ps = rows[:, None] * P + ps[None, :]
            dh_own = tl.load(cur + off_ps, mask=m_bps, other=0.0)
            if HAS_ZH:
                dh_t_ps = dh_own + tl.load(dout_ptr + t * B * P + off_ps, mask=m_bps, other=0.0).to(
                    tl.float32
                )
                z_ps = tl.load(zh_ptr + t * B * P + off_ps, mask=m_bps, other=0.0).to(tl.float32)
                dh_in += z_ps * dh_t_ps
            tl.store(nxt + off_ps, tl.where(act[:, None], dh_in, dh_own), mask=m_bps)
        if HAS_PROJ:  # phase 1 of the next step reads all of dh
            if USE_BARRIER:
                barriers += 1
                grid_barrier(counter_ptr, barriers * n_programs)
        s += 1

    if PHASE != 2:
        tl.store(dc_ptr + rows[:, None] * H + hs[None, :], dc, mask=m_bh)
        if HAS_PEEP_IF:
            tl.store(dw_ci_ptr + hs, dw_ci, mask=hs_ok)
            tl.store(dw_cf_ptr + hs, dw_cf, mask=hs_ok)
        if HAS_PEEP_O:
            tl.store(dw_co_ptr + hs, dw_co, mask=hs_ok)
        if HAS_LN_HH:
            tl.store(dln_hh_ptr + 0 * H + hs, dln_i, mask=hs_ok)
            tl.store(dln_hh_ptr + 1 * H + hs, dln_f, mask=hs_ok)
            tl.store(dln_hh_ptr + 2 * H + hs, dln_g, mask=hs_ok)
            tl.store(dln_hh_ptr + 3 * H + hs, dln_o, mask=hs_ok)
        if HAS_LN_C:
            tl.store(dln_c_w_ptr + hs, dln_c_w, mask=hs_ok)
            tl.store(dln_c_b_ptr + hs, dln_c_b, mask=hs_ok)


def triton_backward(
    inputs: RecurrenceInputs,
    saved: SavedTensors,
    dout: Tensor,  # (T, B, P)
    dh_n: Tensor,  # (B, P)
    dc_n: Tensor,  # (B, H)
    batch_sizes: Tensor | None,
    reverse: bool,
    opts: CellOptions,
    needs_grad: tuple[bool, ...] | None = None,
    programs: int | None = None,
    mode: str = "persistent",
) -> RecurrenceGrads:
    """:func:`lstmkit.reference.backward.recurrence_backward` as one persistent Triton kernel.

    ``saved`` as :func:`~lstmkit.kernels.triton.lstm_fwd.triton_forward` returned it. Returns the
    gradients of ``xg .. ln_bias_c`` (:class:`~lstmkit.reference.recurrence.RecurrenceGrads`),
    each in its argument's dtype, None where the argument is None or (``needs_grad``, one flag
    per field) not wanted; the wanted flags only skip the GEMMs after the loop.

    ``programs`` and ``mode`` as for :func:`~lstmkit.kernels.triton.lstm_fwd.triton_forward`:
    ``mode="stepwise"`` launches each phase of each step on its own (``dc`` and the running sums
    of the peephole and layer-norm weight gradients then go through global memory between
    launches), for GPUs that cannot hold every program at once and for interpreter tests of
    more than one program.
    """
    xg, w_hh, b_hh = inputs.xg, inputs.weight_hh, inputs.bias_hh
    w_hr, w_ci, w_cf, w_co = inputs.weight_hr, inputs.weight_ci, inputs.weight_cf, inputs.weight_co
    ln_hh, ln_c_w = inputs.ln_weight_hh, inputs.ln_weight_c
    zh, zc, dmask = inputs.zoneout_h, inputs.zoneout_c, inputs.dropout_h
    launch = plan_launch(inputs, opts, programs, mode)
    T, B, H, P, HS, PS, n_prog, stepwise = launch
    G = 4 * H
    dev, f32 = xg.device, torch.float32
    need = [True] * N_GRAD_ARGS if needs_grad is None else [bool(x) for x in needs_grad]

    def c(x: Tensor | None) -> Tensor:
        return dummy if x is None else x.contiguous()

    dummy = torch.zeros(1, device=dev, dtype=f32)
    dh_buf = torch.zeros(2, B, P, device=dev, dtype=f32)
    dh_buf[0] = dh_n
    if stepwise:  # dc between launches: each reads it from dc_n_ptr and writes it to dc_ptr
        dc = dc_n.to(f32).contiguous().clone()
    else:
        dc = torch.zeros(B, H, device=dev, dtype=f32)
    dxg = torch.zeros(T, B, G, device=dev, dtype=f32)
    d_rec = torch.zeros(T, B, G, device=dev, dtype=f32) if ln_hh is not None else dxg
    dhn = torch.zeros(T, B, P, device=dev, dtype=f32) if w_hr is not None else dummy
    dw = {k: torch.zeros(H, device=dev, dtype=f32) for k in ("ci", "cf", "co", "c_w", "c_b")}
    dln_hh = torch.zeros(G, device=dev, dtype=f32)
    bs, counter = step_tensors(batch_sizes, dummy)
    kargs = (
        c(w_hh),
        c(w_hr),
        c(w_ci),
        c(w_cf),
        c(w_co),
        c(ln_hh),
        c(ln_c_w),
        c(zh),
        c(zc),
        c(dmask),
        bs,
        *(c(getattr(saved, k)) for k in ("gates", "c_prev", "c_new", "c_out")),
        *(c(getattr(saved, k)) for k in ("r_hat", "rstd_hh", "c_hat", "rstd_c")),
        dout.contiguous(),
        dc if stepwise else dc_n.contiguous(),
        dh_buf,
        dc,
        dxg,
        d_rec,
        dhn,
        dw["ci"],
        dw["cf"],
        dw["co"],
        dln_hh,
        dw["c_w"],
        dw["c_b"],
        counter,
        T,
        B,
        H,
        P,
        HS,
        PS,
        n_prog,
    )
    switches = variant_switches(inputs, batch_sizes, reverse, opts, launch)
    run_kernel(_lstm_bwd_kernel, kargs, switches, launch, (1, 2))
    dw_hh = d_rec.reshape(-1, G).T @ saved.h_in.reshape(-1, P) if need[3] else None
    db_hh = dxg.sum((0, 1)) if b_hh is not None and need[4] else None
    dw_hr = dhn.reshape(-1, P).T @ saved.m.reshape(-1, H) if w_hr is not None and need[5] else None
    grads = (
        dxg,
        dh_buf[T % 2],
        dc,
        dw_hh,
        db_hh,
        dw_hr,
        dw["ci"],
        dw["cf"],
        dw["co"],
        dln_hh,
        dw["c_w"],
        dw["c_b"],
    )
    return RecurrenceGrads(
        *(
            g.to(a.dtype) if g is not None and a is not None and n else None
            for g, a, n in zip(grads, (getattr(inputs, k) for k in GRAD_FIELDS), need, strict=True)
        )
    )
