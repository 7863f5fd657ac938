"""Shared helpers of the nn tests."""

import pytest
import torch

from lstmkit.kernels.cpu import recurrence as cpu_recurrence


def backends():
    """Every backend that runs our own recurrence; the fused CPU one skips if it cannot build."""
    cpu = pytest.param(
        "cpu",
        marks=pytest.mark.skipif(
            not cpu_recurrence.is_available(),
            reason=f"fused CPU kernel unavailable: {cpu_recurrence.build_error()}",
        ),
    )
    return ["python", cpu]


def make_input(
    T, B, I, *, batch_first=False, packed=False, unbatched=False, dtype=torch.float32, lengths=None
):
    if packed:
        lengths = lengths or [T] + [max(1, T - 1 - k) for k in range(B - 1)]
        seqs = [torch.randn(n, I, dtype=dtype) for n in lengths]
        perm = torch.randperm(B).tolist()
        return torch.nn.utils.rnn.pack_sequence([seqs[p] for p in perm], enforce_sorted=False)
    if unbatched:
        return torch.randn(T, I, dtype=dtype)
    return torch.randn(B, T, I, dtype=dtype) if batch_first else torch.randn(T, B, I, dtype=dtype)


def out_tensor(out):
    return out.data if isinstance(out, torch.nn.utils.rnn.PackedSequence) else out
