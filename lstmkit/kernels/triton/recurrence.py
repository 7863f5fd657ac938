"""The Triton LSTM recurrence as an autograd Function, and whether it can run here.

The kernels (``lstm_fwd.py``, ``lstm_bwd.py`` beside this file) mirror
:func:`lstmkit.reference.backward.recurrence_forward` and
:func:`~lstmkit.reference.backward.recurrence_backward` step by step, every variant included.
They run on CUDA tensors, or on CPU tensors in Triton's interpreter (``TRITON_INTERPRET=1``,
slow, for tests). This module imports triton only when a kernel is called, so that
:func:`is_available` can be asked where triton is not installed.
"""

from __future__ import annotations

import importlib.util
import os

import torch
from torch.autograd.function import once_differentiable

from lstmkit.reference.backward import (
    N_GRAD_ARGS,
    needs_recurrence_save,
    stash_for_backward,
    unstash_for_backward,
)

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


def is_available() -> bool:
    """Whether triton imports and can run: a CUDA device, or ``TRITON_INTERPRET=1``."""
    return unavailable_reason() is None


class TritonLSTMRecurrenceFunction(torch.autograd.Function):
    """The Triton recurrence as an autograd Function.

    Reference: :class:`lstmkit.reference.backward.LSTMRecurrenceFunction`, with the same
    ``apply(batch_sizes, reverse, opts, *tensors)`` convention (tensors in
    :data:`~lstmkit.reference.backward.RECURRENCE_ARGS` order) returning ``out, h_n, c_n``.
    It saves tensors for the backward only when some input needs a gradient.
    """

    @staticmethod
    def forward(ctx, batch_sizes, reverse, opts, *args):
        from lstmkit.kernels.triton.lstm_fwd import triton_forward

        save = needs_recurrence_save(ctx)
        out, h_n, c_n, saved = triton_forward(batch_sizes, reverse, opts, *args, save=save)
        stash_for_backward(ctx, batch_sizes, reverse, opts, args, saved)
        return out, h_n, c_n

    @staticmethod
    @once_differentiable  # the Triton backward is not itself differentiable
    def backward(ctx, dout, dh_n, dc_n):
        from lstmkit.kernels.triton.lstm_bwd import triton_backward

        args, saved, batch_sizes, reverse, opts = unstash_for_backward(ctx)
        needs = ctx.needs_input_grad[3 : 3 + N_GRAD_ARGS]
        grads = triton_backward(
            args, saved, dout, dh_n, dc_n, batch_sizes, reverse, opts, needs_grad=needs
        )
        return (None, None, None, *grads, *([None] * (len(args) - N_GRAD_ARGS)))
