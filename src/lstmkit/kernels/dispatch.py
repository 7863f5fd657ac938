"""The only place that picks a backend for the LSTM recurrence.

Backends, all with the same signature ``fn(batch_sizes, reverse, opts, *tensors) -> (out, h_n,
c_n)`` (tensors in :data:`lstmkit.reference.backward.RECURRENCE_ARGS` order):

- ``"cpu"``: the fused C++ recurrence (:mod:`lstmkit.kernels.cpu.recurrence`), every variant.
- ``"triton"``: the persistent Triton kernels (:mod:`lstmkit.kernels.triton.recurrence`),
  every variant, float32/bfloat16/float16, on CUDA (or on the CPU in Triton's interpreter with
  ``TRITON_INTERPRET=1``, for tests). Verified in the interpreter only so far, so ``"auto"``
  does not pick it yet; ask for it by name.
- ``"python"``: the hand-written forward/backward in PyTorch
  (:class:`lstmkit.reference.backward.LSTMRecurrenceFunction`), any device.
- ``"reference"``: eager autograd through :func:`lstmkit.reference.lstm.lstm_recurrence`,
  the slowest and the ground truth.

``"torch"`` (PyTorch's own fused LSTM, vanilla only) is chosen by the module itself, since it
runs whole stacks of layers; ``"auto"`` picks the fastest available.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from lstmkit.kernels.cpu import recurrence as cpu_recurrence
from lstmkit.kernels.triton import recurrence as triton_recurrence
from lstmkit.reference.backward import (
    LSTMRecurrenceFunction,
    check_recurrence_args,
    recurrence_forward,
)
from lstmkit.reference.lstm import CellOptions, lstm_recurrence

BACKENDS = ("auto", "torch", "cpu", "triton", "python", "reference")

RecurrenceFn = Callable[..., tuple[Tensor, Tensor, Tensor]]

_warned: set[str] = set()


def _warn_once(msg: str) -> None:
    if msg not in _warned:
        _warned.add(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=3)


def _reference(batch_sizes, reverse, opts, *tensors):
    check_recurrence_args(tensors, batch_sizes, opts)
    out, h, c, _ = lstm_recurrence(*tensors, batch_sizes=batch_sizes, reverse=reverse, opts=opts)
    return out, h, c


CPU_DTYPES = (torch.float32, torch.float64)
TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _check_triton(device: torch.device, dtype: torch.dtype) -> None:
    reason = triton_recurrence.unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"backend='triton' cannot run here: {reason}")
    if device.type != "cuda" and not triton_recurrence.interpreting():
        raise ValueError(f"backend='triton' needs CUDA tensors, got device {device}")
    if dtype not in TRITON_DTYPES:
        raise ValueError(f"backend='triton' supports {TRITON_DTYPES}, got {dtype}")


def resolve_backend(backend: str, device: torch.device, dtype: torch.dtype = torch.float32) -> str:
    """Turn ``"auto"`` into a concrete recurrence backend for ``device``; check the others."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        raise ValueError(
            "backend='torch' runs only the vanilla LSTM (no variant options, no gate recording); "
            "use backend='auto', 'cpu', 'python' or 'reference' for variants"
        )
    if backend == "cpu" and device.type != "cpu":
        raise ValueError(f"backend='cpu' needs CPU tensors, got device {device}")
    if backend == "cpu" and dtype not in CPU_DTYPES:
        raise ValueError(f"backend='cpu' supports {CPU_DTYPES}, got {dtype}")
    if backend == "cpu" and not cpu_recurrence.is_available():
        raise RuntimeError(f"the fused CPU kernel failed to build: {cpu_recurrence.build_error()}")
    if backend == "triton":
        _check_triton(device, dtype)
    if backend != "auto":
        return backend
    if device.type == "cpu" and dtype not in CPU_DTYPES:
        _warn_once(f"lstmkit: the fused CPU kernel runs {CPU_DTYPES}; {dtype} uses the slower loop")
        return "python"
    if device.type == "cpu":
        if cpu_recurrence.is_available():
            return "cpu"
        _warn_once(
            "lstmkit: fused CPU kernel unavailable "
            f"({cpu_recurrence.build_error()}); using the slower PyTorch reference loop"
        )
        return "python"
    _warn_once(
        f"lstmkit: no fused kernel for LSTM variants on {device.type} yet; "
        "using the PyTorch reference loop"
    )
    return "python"


_TABLE: dict[str, Callable[[], RecurrenceFn]] = {
    "cpu": lambda: cpu_recurrence.FusedLSTMRecurrenceFunction.apply,
    "triton": lambda: triton_recurrence.TritonLSTMRecurrenceFunction.apply,
    "python": lambda: LSTMRecurrenceFunction.apply,
    "reference": lambda: _reference,
}


def vanilla_uses_torch(
    device: torch.device, dtype: torch.dtype, proj_size: int, packed: bool = False
) -> bool:
    """For ``backend="auto"`` and vanilla math: run PyTorch's own LSTM, or our recurrence?

    On CPU the fused kernel takes over where PyTorch leaves its oneDNN path:

    - with a projection (PyTorch warns and loops over ATen ops): 2-7 times faster;
    - on a ``PackedSequence``: PyTorch's packed CPU LSTM trains at about half the speed of its
      padded one, the fused kernel at the padded speed; a training step of the speech and
      translation encoders takes 0.5-0.85 of PyTorch's time, inference the same
      (``bench/packed.py``, docs/BENCHMARKS.md).
    """
    return not (
        (proj_size > 0 or packed)
        and device.type == "cpu"
        and dtype in CPU_DTYPES
        and cpu_recurrence.is_available()
    )


def recurrence(backend: str) -> RecurrenceFn:
    """The recurrence function of a concrete backend (see :func:`resolve_backend`)."""
    if backend not in _TABLE:
        raise ValueError(f"no recurrence for backend {backend!r}; supported: {sorted(_TABLE)}")
    return _TABLE[backend]()


def trace_forward(
    backend: str,
    tensors: tuple[Tensor | None, ...],
    batch_sizes: Tensor | None,
    reverse: bool,
    opts: CellOptions,
) -> dict[str, Tensor]:
    """Run the forward once without autograd and return its saved tensors (gates, cells).

    Used only when gates are recorded, so the recording costs nothing otherwise.
    """
    with torch.no_grad():
        if backend == "cpu":
            _, _, _, saved = cpu_recurrence.fused_forward(tensors, batch_sizes, reverse, opts, True)
            if {"gates", "c_prev", "c_new"} <= saved.keys():
                return saved
        _, _, _, saved = recurrence_forward(tensors, batch_sizes, reverse, opts, True)
    return saved
