"""Triton kernels of the LSTM recurrence (forward and backward), for CUDA GPUs.

``recurrence`` holds the autograd Function and :func:`~lstmkit.kernels.triton.recurrence.
is_available`; importing it does not import triton, so callers can ask first. ``lstm_fwd`` and
``lstm_bwd`` (which do import triton) hold the kernels.
"""
