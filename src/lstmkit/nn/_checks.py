"""Argument validation with messages that name the argument, what was expected and what came."""

from __future__ import annotations

import torch
from torch import Tensor

# The scalar checks live with the variant options, the lowest layer that needs them.
from lstmkit.reference.options import (
    check_bool,
    check_eps,
    check_finite,
    check_int,
    check_rate,
)

__all__ = [
    "check_batch_sizes",
    "check_bool",
    "check_device",
    "check_eps",
    "check_factory",
    "check_finite",
    "check_int",
    "check_permutation",
    "check_rate",
    "check_shape",
    "check_sorting",
    "check_tensor",
]


def check_tensor(name: str, x: object, like: Tensor) -> Tensor:
    """``x`` is a floating tensor with the dtype and device of the module's weights."""
    if not torch.is_tensor(x):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.dtype != like.dtype:
        raise TypeError(
            f"{name} has dtype {x.dtype} but the module's weights are {like.dtype}; "
            f"convert one of them (e.g. module.to({x.dtype}))"
        )
    if x.device != like.device:
        raise ValueError(
            f"{name} is on {x.device} but the module's weights are on {like.device}; "
            f"move one of them (e.g. module.to('{x.device}'))"
        )
    return x


def check_shape(name: str, x: Tensor, expected: tuple[int, ...]) -> None:
    if tuple(x.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)}, got {tuple(x.shape)}")


def check_factory(device: object, dtype: object) -> None:
    """The ``device``/``dtype`` constructor arguments name something this build can make."""
    if dtype is not None:
        if not isinstance(dtype, torch.dtype):
            raise TypeError(f"dtype must be a torch.dtype, got {type(dtype).__name__} {dtype!r}")
        if not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating-point dtype, got {dtype}")
    if device is None:
        return
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device={device!r} is not a device: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r}, but this PyTorch build has no usable CUDA "
            "(torch.cuda.is_available() is False)"
        )


def check_device(name: str, x: Tensor) -> None:
    """``x`` holds data: meta tensors (shapes only) cannot run a recurrence."""
    if x.device.type == "meta":
        raise ValueError(
            f"{name} is on the meta device, which holds no data; lstmkit runs on real tensors "
            "(move the module and the input to 'cpu' or 'cuda')"
        )


def check_batch_sizes(batch_sizes: object, n_rows: int) -> Tensor:
    """``batch_sizes`` of a PackedSequence with ``n_rows`` rows of data is a valid packing.

    1-D int64 on the CPU, not empty, every entry >= 1, non-increasing (sequences sorted by
    length) and summing to ``n_rows``. Anything else makes torch's unpacking read or write past
    its buffers, so it is checked before anything touches the data; the cost is a few small
    ops on a (T,) tensor.
    """
    if not torch.is_tensor(batch_sizes):
        raise TypeError(
            f"input.batch_sizes must be a torch.Tensor, got {type(batch_sizes).__name__}"
        )
    bs = batch_sizes
    if bs.dim() != 1 or bs.dtype != torch.int64 or bs.device.type != "cpu":
        raise ValueError(
            "input.batch_sizes must be a 1-D int64 tensor on the CPU, got "
            f"{bs.dim()}-D {bs.dtype} on {bs.device}"
        )
    # One copy to a list, then plain Python: cheaper than a handful of tiny tensor ops.
    vals = bs.tolist()
    if not vals:
        raise ValueError("input.batch_sizes is empty: a PackedSequence needs at least one step")
    if any(b > a for a, b in zip(vals, vals[1:], strict=False)):
        raise ValueError(
            f"input.batch_sizes must be non-increasing (sequences sorted by length), got "
            f"{_show(bs)}"
        )
    if vals[-1] < 1:
        raise ValueError(f"input.batch_sizes must be >= 1 at every step, got {_show(bs)}")
    total = sum(vals)
    if total != n_rows:
        raise ValueError(
            f"input.batch_sizes sums to {total} but input.data has {n_rows} rows: {_show(bs)}"
        )
    return bs


def check_permutation(name: str, idx: object, n: int, device: torch.device) -> list[int]:
    """``idx`` is a 1-D int64 tensor of ``n`` indices in ``[0, n)`` on ``device``; its values."""
    if not torch.is_tensor(idx):
        raise TypeError(f"{name} must be a torch.Tensor or None, got {type(idx).__name__}")
    if idx.dim() != 1 or idx.dtype != torch.int64 or idx.shape[0] != n:
        raise ValueError(
            f"{name} must be a 1-D int64 tensor of batch_sizes[0] = {n} indices, got "
            f"{idx.dim()}-D {idx.dtype} of shape {tuple(idx.shape)}"
        )
    if idx.device != device:
        raise ValueError(f"{name} is on {idx.device} but input.data is on {device}")
    vals = idx.tolist()
    if any(not 0 <= v < n for v in vals):
        raise ValueError(f"{name} must hold indices in [0, {n}), got {_show(idx)}")
    return vals


def check_sorting(sorted_indices: object, unsorted_indices: object, n: int, device) -> None:
    """A PackedSequence's ``sorted_indices`` and ``unsorted_indices``: both None, or a
    permutation of the ``n`` batch rows and its inverse."""
    if sorted_indices is None and unsorted_indices is None:
        return
    if sorted_indices is None or unsorted_indices is None:
        raise ValueError(
            "input.sorted_indices and input.unsorted_indices must both be given or both be None"
        )
    s = check_permutation("input.sorted_indices", sorted_indices, n, device)
    u = check_permutation("input.unsorted_indices", unsorted_indices, n, device)
    if any(s[j] != k for k, j in enumerate(u)):
        raise ValueError(
            "input.unsorted_indices must be the inverse permutation of input.sorted_indices, "
            f"got {_show(s)} and {_show(u)}"
        )


def _show(t: Tensor | list[int], limit: int = 12) -> str:
    v = t.tolist() if torch.is_tensor(t) else list(t)
    return str(v if len(v) <= limit else v[:limit] + ["..."])
