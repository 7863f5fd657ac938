r"""The quantized inference LSTM recurrence (int8 or bf16 weights): loader and entry point.

The kernel (``lstm_quant.cpp`` beside this file) is the eval-mode forward scan of
:func:`lstmkit.reference.lstm.recurrence_forward` with the weight matrices ``W_hh``, ``W_hr``
(and, folded into the step, ``W_ih``) stored quantized:

- ``int8``: symmetric, one scale per output row, as :func:`torch.ao.quantization.quantize_dynamic`
  stores them: :math:`s_j = \max_k |W_{jk}| / 127`, :math:`q_{jk} = \mathrm{round}(W_{jk} / s_j)
  \in [-127, 127]`, :math:`W_{jk} \approx s_j q_{jk}`;
- ``bf16``: :math:`W` rounded to bfloat16 (nearest even).

What multiplies the int8 matrices is the ``activations`` argument of :func:`quant_recurrence`:

- ``"float"`` (weight-only; the bf16 mode always): activations and state stay float32; the
  kernel widens the weights to float in registers, so its result is the float recurrence with
  the dequantized weights (:func:`dequantize_weight`), up to the float rounding of the sums.
- ``"int8"`` (dynamic quantization of the activations, as torch's dynamic quantization does):
  each vector multiplied by an int8 matrix (:math:`h_{t-1}`, :math:`x_t`, :math:`m_t` before
  ``W_hr``; per step and batch row) is quantized symmetrically from its max-abs,

  .. math::

      s_a = \max_k |a_k| / 127, \quad q_k = \mathrm{clamp}(\mathrm{rint}(a_k \cdot (1 / s_a)),
      -127, 127), \quad y_j = (s_a s_j) \cdot \sum_k q_{jk} q_k

  (float32 arithmetic in that order, ``rint`` rounding half to even as :func:`torch.round`;
  :math:`s_a` below the smallest normal float, an all-zero vector, gives :math:`s_a = 0`,
  :math:`y = 0`); the integer sum is exact (VNNI ``vpdpbusd`` where the CPU has it), so every
  instruction set gives bitwise the same result. :func:`quantize_activation` is that
  quantization in PyTorch (the tests' reference). The input projection is then done by the
  kernel for every step (each ``x_t`` quantized on its own: a T-step call equals T one-step
  calls).

Everything else (biases, peepholes, layer norm, gates, the cell) is float32. No autograd: this
is for inference.

The entry point for other code (benchmarks, :mod:`lstmkit.nn.quantized`) is
:func:`quant_recurrence`; :func:`best_isa` names the instruction set it runs.

``pip install`` builds it as ``lstmkit.kernels.cpu._lstm_quant`` with its own record (see
``_build.py``), loaded while the record matches; else it is compiled at first use exactly as the
float kernel is (:mod:`lstmkit.kernels.cpu.recurrence`), and ``LSTMKIT_FORBID_JIT=1`` makes that
an error. ``LSTMKIT_QUANT_ISA=portable|avx2|avx_vnni|avx512|avx512_vnni`` forces one of the
instruction sets the CPU has (:func:`available_isas`).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import torch
from torch import Tensor

from lstmkit.kernels.cpu import _build
from lstmkit.kernels.cpu.recurrence import _ensure_ninja, _flag, _import_from, _one_line

__all__ = [
    "ACTIVATIONS",
    "ISA_NAMES",
    "MODES",
    "Int8Pack",
    "QuantRecurrenceInputs",
    "available_isas",
    "best_isa",
    "build_error",
    "dequantize_weight",
    "is_available",
    "load_extension",
    "pack_int8",
    "quant_recurrence",
    "quantize_activation",
    "quantize_weight",
]

MODES = ("int8", "bf16")
ACTIVATIONS = ("int8", "float")  # what multiplies an int8 matrix (see the module doc)
# the kernel's isa numbers, lowest first
ISA_NAMES = ("portable", "avx2", "avx_vnni", "avx512", "avx512_vnni")
_SOURCE = _build.QUANT_SOURCE
_PREBUILT = f"lstmkit.kernels.cpu.{_build.QUANT_EXT_NAME}"
_DONE = "lstmkit-built"
_lock = threading.Lock()
_module: ModuleType | None = None
_origin: str | None = None
_available: bool | None = None
_error: str | None = None
_warned_portable = False


class _NotBuilt(RuntimeError):
    """The run-time build was not tried; the message says why in one line."""


def _load_prebuilt() -> tuple[ModuleType | None, str]:
    if _flag("LSTMKIT_NO_PREBUILT"):
        return None, "LSTMKIT_NO_PREBUILT is set"
    spec = importlib.util.find_spec(_PREBUILT)
    if spec is None or not spec.origin:
        return None, "no quantized kernel was built at install"
    record = _build.read_record(Path(spec.origin).with_name(_build.QUANT_RECORD_NAME))
    if record is None:
        return None, f"the installed kernel has no readable {_build.QUANT_RECORD_NAME}"
    why = _build.mismatch(record, _build.build_record(torch.__version__, _SOURCE), _SOURCE)
    if why is not None:
        return None, why
    try:
        return importlib.import_module(_PREBUILT), ""
    except ImportError as e:
        return None, f"the installed quantized kernel does not load: {e}"


def _jit_build(why: str) -> tuple[ModuleType, str]:
    from torch.utils import cpp_extension

    ninja = _ensure_ninja()
    name = _build.jit_key(torch.__version__, ninja, _SOURCE, prefix="lstmkit_cpu_quant_")
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or cpp_extension.get_default_build_root()
    build_dir = Path(root) / name
    built = build_dir / f"{name}.so"
    if (build_dir / _DONE).is_file() and built.is_file():
        return _import_from(built, name), str(built)
    if _flag("LSTMKIT_FORBID_JIT"):
        raise _NotBuilt(
            f"the quantized CPU kernel would be compiled at run time ({why}), and "
            "LSTMKIT_FORBID_JIT is set; run `make` (pip install --no-build-isolation -e .) to "
            "build it"
        )
    if _build.compiler() is None:
        raise _NotBuilt(f"no C++ compiler to build {_SOURCE.name} ({why})")
    if ninja is None:
        raise _NotBuilt(f"ninja not found to build {_SOURCE.name} ({why}); pip install ninja")
    print(
        f"lstmkit: building the quantized CPU kernel ({why}); under a minute, once "
        f"(cached in {build_dir})",
        file=sys.stderr,
        flush=True,
    )
    build_dir.mkdir(parents=True, exist_ok=True)
    module = cpp_extension.load(
        name=name,
        sources=[str(_SOURCE)],
        extra_cflags=_build.CFLAGS,
        extra_ldflags=_build.LDFLAGS,
        build_directory=str(build_dir),
        verbose=False,
    )
    (build_dir / _DONE).write_text(f"{_SOURCE}\n")
    return module, str(built)


def load_extension() -> ModuleType:
    """The quantized kernel: the install-time build when it matches, else a run-time build."""
    global _module, _origin
    if _module is not None:
        return _module
    with _lock:
        if _module is None:
            module, why = _load_prebuilt()
            if module is not None:
                _module, _origin = module, str(module.__file__)
                return _module
            try:
                _module, _origin = _jit_build(why)
            except _NotBuilt:
                raise
            except Exception as e:
                raise RuntimeError(
                    f"building the quantized CPU LSTM extension ({_SOURCE.name}) failed: {e}"
                ) from e
    return _module


def is_available() -> bool:
    """Whether the quantized kernel loads (or builds) here; tried once per process."""
    global _available, _error
    if _available is None:
        try:
            load_extension()
            _available = True
        except RuntimeError as e:
            _available, _error = False, _one_line(str(e))
    return _available


def build_error() -> str | None:
    """Why the kernel is unavailable (after :func:`is_available` returned False), else None."""
    return _error


def kernel_origin() -> str | None:
    return _origin


def best_isa() -> str:
    """The best instruction set of this CPU for the kernel: ``avx512_vnni``, ``avx512``,
    ``avx_vnni``, ``avx2`` or ``portable`` (the weight-only GEMV runs its AVX-512 version for
    the ``avx512*`` names, its AVX2 one for ``avx2`` and ``avx_vnni``). Asked of the kernel
    once (every streaming call resolves its isa)."""
    global _best
    if _best is None:
        _best = load_extension().best_isa()
    return _best


_best: str | None = None


def available_isas() -> tuple[str, ...]:
    """The instruction sets this CPU has, lowest first: each can be forced (``isa=``)."""
    return tuple(load_extension().available_isas())


def _resolve_isa(isa: str | None) -> int:
    """The kernel's isa number: the argument, else ``$LSTMKIT_QUANT_ISA``, else the best (-1)."""
    global _warned_portable
    name = isa if isa is not None else os.environ.get("LSTMKIT_QUANT_ISA", "").strip() or None
    if name is None:
        if not _warned_portable and best_isa() == "portable":
            _warned_portable = True
            print(
                "lstmkit: this CPU has neither AVX-512 nor AVX2+FMA: the quantized kernel runs "
                "its portable loop (slower)",
                file=sys.stderr,
            )
        return -1
    if name not in ISA_NAMES:
        raise ValueError(
            f"isa (LSTMKIT_QUANT_ISA) must be one of {', '.join(ISA_NAMES)}, got {name!r}"
        )
    if name not in available_isas():
        raise ValueError(f"isa {name!r} is not available on this CPU (best: {best_isa()})")
    return ISA_NAMES.index(name)


# -- the weights ------------------------------------------------------------------------------


def quantize_weight(w: Tensor, mode: str) -> tuple[Tensor, Tensor | None]:
    """``(q, scale)``: ``int8`` with per-row scales ``(N,)`` float32, or ``bf16`` and None.

    A row of zeros gets scale 1 (its q is 0 either way), so no scale is 0 or inf.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    w = w.detach().to(torch.float32)
    if mode == "bf16":
        return w.to(torch.bfloat16).contiguous(), None
    amax = w.abs().amax(dim=1)
    scale = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
    q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q.contiguous(), scale.contiguous()


def dequantize_weight(q: Tensor, scale: Tensor | None) -> Tensor:
    """The float32 weights the kernel computes with: ``scale[:, None] * q`` (int8) or ``q``."""
    w = q.to(torch.float32)
    return w if scale is None else w * scale[:, None]


def quantize_activation(a: Tensor) -> tuple[Tensor, Tensor]:
    """``(q, s_a)`` of the kernel's dynamic activation quantization, per row of ``a (..., K)``:
    ``q`` int8 ``(..., K)`` and ``s_a`` float32 ``(..., 1)`` with ``a ~ s_a * q`` (module doc;
    the same float32 steps as the kernel, so the same ``q``)."""
    a = a.to(torch.float32)
    s = a.abs().amax(dim=-1, keepdim=True) / 127.0
    s = torch.where(s >= torch.finfo(torch.float32).tiny, s, torch.zeros_like(s))
    inv = torch.where(s > 0, 1.0 / torch.where(s > 0, s, torch.ones_like(s)), torch.zeros_like(s))
    q = torch.round(a * inv).clamp_(-127, 127).to(torch.int8)
    return q, s


class Int8Pack(NamedTuple):
    """An int8 matrix ``(N, K)`` in the layout the int8-activation GEMV reads (:func:`pack_int8`):
    blocks of 16 rows x 4 columns, zero-padded to ``N16 = 16 ceil(N / 16)`` rows and
    ``4 ceil(K / 4)`` columns, and the row sums ``sum_k q[j, k]`` ``(N16,)`` int32 (vpdpbusd
    multiplies unsigned activations ``q_a + 128``; the kernel subtracts ``128 * rowsum``)."""

    packed: Tensor  # (N16 * K4 * 4,) int8
    rowsum: Tensor  # (N16,) int32


def pack_int8(q: Tensor) -> Int8Pack:
    """The :class:`Int8Pack` of an int8 weight ``q (N, K)``; computed once per weight and
    passed to :func:`quant_recurrence` (without it the kernel packs at every call)."""
    return Int8Pack(*load_extension().pack_int8(q))


class QuantRecurrenceInputs(NamedTuple):
    """The tensors of one quantized recurrence (one layer, one direction, eval form).

    ``inp`` is ``xg (T, B, 4H)`` (the input projection done before, as the float kernels take
    it), or ``x (T, B, I)`` when ``weight_ih`` is given: then each step computes
    ``LN(x W_ih^T) gamma_ih + b_ih`` itself (a streaming call, T = 1). ``weight_*`` are int8 with
    their ``scale_*`` or bfloat16 with None.
    """

    inp: Tensor
    h0: Tensor  # (B, P)
    c0: Tensor  # (B, H)
    weight_hh: Tensor  # (4H, P)
    scale_hh: Tensor | None = None  # (4H,)
    bias_hh: Tensor | None = None  # (4H,)
    weight_hr: Tensor | None = None  # (P, H)
    scale_hr: Tensor | None = None  # (P,)
    weight_ci: Tensor | None = None  # (H,)
    weight_cf: Tensor | None = None
    weight_co: Tensor | None = None
    ln_weight_hh: Tensor | None = None  # (4H,)
    ln_weight_c: Tensor | None = None  # (H,)
    ln_bias_c: Tensor | None = None  # (H,)
    zoneout_h: float = 0.0  # eval zoneout rates
    zoneout_c: float = 0.0
    weight_ih: Tensor | None = None  # (4H, I) folded input projection
    scale_ih: Tensor | None = None  # (4H,)
    bias_ih: Tensor | None = None  # (4H,)
    ln_weight_ih: Tensor | None = None  # (4H,)
    # int8 activations: pack_int8 of weight_ih / weight_hh / weight_hr (else packed per call)
    pack_ih: Int8Pack | None = None
    pack_hh: Int8Pack | None = None
    pack_hr: Int8Pack | None = None


def _c(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.detach().contiguous()


def quant_recurrence(
    inputs: QuantRecurrenceInputs,
    lengths: Tensor | None = None,  # (B,) int64: row b is active at steps t < lengths[b]
    reverse: bool = False,
    coupled: bool = False,
    forget_gate: bool = True,
    layer_norm_eps: float = 1e-5,
    isa: str | None = None,
    activations: str = "float",
) -> tuple[Tensor, Tensor, Tensor]:
    """``out (T, B, P), h_n (B, P), c_n (B, H)`` of the quantized recurrence.

    Reference: :func:`lstmkit.reference.lstm.recurrence_forward` with the weights
    :func:`dequantize_weight` gives, eval-form zoneout (the rates) and no recurrent dropout.
    With ``lengths``, inactive rows keep their state and output zeros, as with packed
    sequences; ``reverse`` runs from ``T-1`` down. ``activations="int8"`` (int8 weights only)
    quantizes what multiplies each matrix (module doc); the reference is then the same scan
    with :func:`quantize_activation` before each product (tests/kernels/cpu/test_quant.py).
    """
    if activations not in ACTIVATIONS:
        raise ValueError(
            f"activations must be one of {', '.join(ACTIVATIONS)}, got {activations!r}"
        )
    f = _c

    def pk(p: Int8Pack | None) -> tuple[Tensor | None, Tensor | None]:
        return (None, None) if p is None else (f(p.packed), f(p.rowsum))

    return tuple(
        load_extension().forward(
            f(inputs.inp),
            f(inputs.weight_ih),
            f(inputs.scale_ih),
            f(inputs.bias_ih),
            f(inputs.ln_weight_ih),
            f(inputs.h0),
            f(inputs.c0),
            f(inputs.weight_hh),
            f(inputs.scale_hh),
            f(inputs.bias_hh),
            f(inputs.weight_hr),
            f(inputs.scale_hr),
            f(inputs.weight_ci),
            f(inputs.weight_cf),
            f(inputs.weight_co),
            f(inputs.ln_weight_hh),
            f(inputs.ln_weight_c),
            f(inputs.ln_bias_c),
            float(inputs.zoneout_h),
            float(inputs.zoneout_c),
            None if lengths is None else lengths.to(torch.int64).contiguous(),
            bool(reverse),
            bool(coupled),
            bool(forget_gate),
            float(layer_norm_eps),
            _resolve_isa(isa),
            activations == "int8",
            *pk(inputs.pack_ih),
            *pk(inputs.pack_hh),
            *pk(inputs.pack_hr),
        )
    )
