"""The Triton LSTM recurrence as an autograd Function, and whether it can run here.

The kernels (``lstm_fwd.py``, ``lstm_bwd.py`` beside this file) mirror
:func:`lstmkit.reference.lstm.recurrence_forward` and
:func:`lstmkit.reference.backward.recurrence_backward` step by step, every variant included.
They run on CUDA tensors, or on CPU tensors in Triton's interpreter (``TRITON_INTERPRET=1``,
slow, for tests). This module imports triton only when a kernel is called, so that
:func:`is_available` can be asked where triton is not installed.
"""

from __future__ import annotations

import importlib.util
import os

import torch

from lstmkit.reference.backward import recurrence_function

__all__ = ["TritonLSTMRecurrenceFunction", "is_available", "unavailable_reason"]


def interpreting() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def unavailable_reason() -> str | None:
    """Why the Triton recurrence cannot run in this process, or None when it can."""
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed"
    if interpreting():
        return None
    if not torch.cuda.is_available():
        return "no CUDA device (set TRITON_INTERPRET=1 to run the kernels in Triton's interpreter)"
    return None


# Asked by the dispatch while Dynamo traces a module: a constant to it (as
# torch.compiler.assume_constant_result marks, without importing Dynamo), not traced into.
interpreting._dynamo_marked_constant = True  # type: ignore[attr-defined]
unavailable_reason._dynamo_marked_constant = True  # type: ignore[attr-defined]


def is_available() -> bool:
    """Whether triton imports and can run: a CUDA device, or ``TRITON_INTERPRET=1``."""
    return unavailable_reason() is None


def forward(inputs, batch_sizes, reverse, opts, save):
    """:func:`~lstmkit.kernels.triton.lstm_fwd.triton_forward`, importing triton on first use."""
    from lstmkit.kernels.triton.lstm_fwd import triton_forward  # imports triton

    return triton_forward(inputs, batch_sizes, reverse, opts, save)


def _backward(inputs, saved, dout, dh_n, dc_n, batch_sizes, reverse, opts, needs_grad=None):
    from lstmkit.kernels.triton.lstm_bwd import triton_backward  # imports triton

    return triton_backward(inputs, saved, dout, dh_n, dc_n, batch_sizes, reverse, opts, needs_grad)


TritonLSTMRecurrenceFunction = recurrence_function(
    "TritonLSTMRecurrenceFunction",
    """The Triton recurrence as an autograd Function (the Triton backward is not itself
    differentiable).

    Reference: :class:`lstmkit.reference.backward.LSTMRecurrenceFunction`, with the same
    ``run(inputs, batch_sizes, reverse, opts)`` returning ``out, h_n, c_n``.
    """,
    forward,
    _backward,
    backend="triton",
)
