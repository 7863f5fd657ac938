"""Helpers shared by the Triton forward and backward recurrence kernels.

The grid-wide step barrier, the activations and the launch configuration (how many programs,
block sizes) live here so that ``lstm_fwd.py`` and ``lstm_bwd.py`` agree on them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from lstmkit.reference.options import CellOptions
from lstmkit.reference.recurrence import RecurrenceInputs

# The smallest block tl.dot accepts on the GPU; the interpreter is held to the same sizes so that
# the kernels it checks are the ones the GPU compiles.
MIN_BLOCK = 16


def interpreting() -> bool:
    """Whether Triton runs its CPU interpreter (``TRITON_INTERPRET=1``) instead of compiling."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def block(n: int) -> int:
    return max(MIN_BLOCK, triton.next_power_of_2(max(int(n), 1)))


MODES = ("persistent", "stepwise")


def resolve_programs(
    programs: int | None,
    H: int,
    layer_norm: bool,
    device: torch.device,
    mode: str = "persistent",
) -> int:
    """How many programs share the hidden units; each owns ``ceil(H / programs)`` of them.

    ``mode="persistent"`` (one launch for the whole sequence): all programs must run at once
    because they wait for each other at every step, so on a GPU there are at most as many as
    streaming multiprocessors. The interpreter runs programs one after the other, so there a
    waiting program would wait forever: it always uses one program, which owns every hidden unit
    and passes each barrier alone.

    ``mode="stepwise"`` (one launch per step, or per phase of a step): the kernel boundary is the
    barrier, so the programs need not be co-resident; any number is allowed, in the interpreter
    too (where it tests the multi-program paths). Without ``programs`` it uses one in the
    interpreter and ``ceil(H / 16)`` on a GPU.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    stepwise = mode == "stepwise"
    if programs is not None and programs < 1:
        raise ValueError(f"programs must be >= 1, got {programs}")
    if interpreting() and not stepwise:
        if programs not in (None, 1):
            raise ValueError(
                f"programs={programs}: the Triton interpreter runs programs one after the other, "
                "so the grid-wide step barrier needs programs=1 there (or mode='stepwise', where "
                "each launch is one step and the launch boundary is the barrier)"
            )
        return 1
    if programs is None:
        if layer_norm or interpreting():
            return 1
        if stepwise:  # no co-residency needed: 16 hidden units (the smallest tl.dot tile) each
            return max(1, triton.cdiv(H, MIN_BLOCK))
        sms = torch.cuda.get_device_properties(device).multi_processor_count
        # 16 hidden units each (the smallest tl.dot tile) keeps the W_hh slice smallest
        return max(1, min(sms, triton.cdiv(H, MIN_BLOCK)))
    if layer_norm and programs > 1:
        raise NotImplementedError(
            f"programs={programs} with layer norm: the layer norms over 4H and H need the whole "
            "row, which only a single program (programs=1) holds so far; a cross-program "
            "reduction per step is not implemented (in either mode)"
        )
    if device.type == "cuda" and not stepwise:
        sms = torch.cuda.get_device_properties(device).multi_processor_count
        if programs > sms:
            raise ValueError(
                f"programs={programs} exceeds the {sms} SMs of {device}: the step barrier needs "
                "every program resident at once (mode='stepwise' does not)"
            )
    return programs


def check_supported(opts: CellOptions, xg: torch.Tensor) -> None:
    if xg.dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"the Triton recurrence supports {SUPPORTED_DTYPES}, got {xg.dtype}")
    if xg.device.type != "cuda" and not interpreting():
        raise ValueError(
            f"the Triton recurrence needs CUDA tensors (or TRITON_INTERPRET=1), got {xg.device}"
        )


SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)

TL_DTYPE = {torch.float32: tl.float32, torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}


class Launch(NamedTuple):
    """The sizes of one recurrence launch (the dimension legend of ``lstm_fwd.py``)."""

    T: int
    B: int
    H: int
    P: int
    HS: int
    PS: int
    programs: int
    stepwise: bool


def plan_launch(
    inputs: RecurrenceInputs, opts: CellOptions, programs: int | None, mode: str
) -> Launch:
    """Check that the kernels can take ``inputs`` and size the launch; the forward and the
    backward kernel split the hidden units the same way."""
    xg = inputs.xg
    check_supported(opts, xg)
    T, B, G = xg.shape
    H = G // 4
    P = inputs.h0.shape[1]
    layer_norm = inputs.ln_weight_hh is not None or inputs.ln_weight_c is not None
    n = resolve_programs(programs, H, layer_norm, xg.device, mode)
    return Launch(T, B, H, P, triton.cdiv(H, n), triton.cdiv(P, n), n, mode == "stepwise")


def step_tensors(
    batch_sizes: torch.Tensor | None, dummy: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The int32 active rows per step (``dummy`` without packing) and the barrier counter."""
    dev = dummy.device
    bs = dummy if batch_sizes is None else batch_sizes.to(device=dev, dtype=torch.int32)
    return bs.contiguous(), torch.zeros(1, device=dev, dtype=torch.int32)


def variant_switches(
    inputs: RecurrenceInputs,
    batch_sizes: torch.Tensor | None,
    reverse: bool,
    opts: CellOptions,
    launch: Launch,
) -> dict[str, object]:
    """The ``tl.constexpr`` switches both kernels take: which tensors are present, the variant
    flags, the operand dtype and the block sizes."""
    return dict(
        REVERSE=bool(reverse),
        HAS_BS=batch_sizes is not None,
        HAS_PROJ=inputs.weight_hr is not None,
        HAS_PEEP_IF=inputs.weight_ci is not None,
        HAS_PEEP_O=inputs.weight_co is not None,
        HAS_LN_HH=inputs.ln_weight_hh is not None,
        HAS_LN_C=inputs.ln_weight_c is not None,
        HAS_ZH=inputs.zoneout_h is not None,
        HAS_ZC=inputs.zoneout_c is not None,
        HAS_DROPOUT=inputs.dropout_h is not None,
        COUPLED=opts.coupled,
        FORGET_GATE=opts.forget_gate,
        OP_DTYPE=TL_DTYPE[inputs.xg.dtype],
        DOT_F32=interpreting(),
        BLOCK_B=block(launch.B),
        BLOCK_HS=block(launch.HS),
        BLOCK_PS=block(launch.PS),
        BLOCK_H=block(launch.H),
        BLOCK_P=block(launch.P),
    )


def run_kernel(
    kernel: Callable,
    args: tuple,
    switches: dict[str, object],
    launch: Launch,
    phases: tuple[int, ...],
) -> None:
    """Persistent: one launch over all ``T`` steps with the grid-wide barrier. Stepwise: one
    launch per step and phase (``phases``), the launch boundary acting as the barrier."""
    grid = kernel[(launch.programs,)]
    if not launch.stepwise:
        grid(*args, 0, launch.T, USE_BARRIER=True, PHASE=0, **switches)
        return
    for s in range(launch.T):
        for phase in phases:
            grid(*args, s, 1, USE_BARRIER=False, PHASE=phase, **switches)


@triton.jit
def grid_barrier(counter_ptr, target):
    """Wait until every program has arrived here; ``target`` = programs * barriers so far.

    The CTA barriers make this program's stores (from all its threads) precede the release
    increment, and keep all its threads waiting until the acquire load sees every arrival. Loads
    of data written by other programs use ``cache_modifier=".cg"`` (L2, not a stale L1).
    """
    tl.debug_barrier()
    tl.atomic_add(counter_ptr, 1, sem="release", scope="gpu")
    while tl.atomic_add(counter_ptr, 0, sem="acquire", scope="gpu") < target:
        pass
    tl.debug_barrier()


@triton.jit
def tanh(x):
    # tl has no tanh; 2 sigmoid(2x) - 1 saturates to +-1 without overflow (exp(-2x) -> inf gives 0)
    return 2.0 * tl.sigmoid(2.0 * x) - 1.0


@triton.jit
def matmul(a, b, OP_DTYPE: tl.constexpr, DOT_F32: tl.constexpr):
    """``a @ b`` with ``a`` (float32) rounded to the operand dtype and a float32 accumulator.

    ``DOT_F32``: multiply the rounded operands in float32. The interpreter needs it for bfloat16
    (its tl.dot multiplies the raw bits); rounding first keeps the same numbers as tensor cores.
    """
    a = a.to(OP_DTYPE)
    if DOT_F32:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    return tl.dot(a, b.to(OP_DTYPE), out_dtype=tl.float32, input_precision="ieee")
