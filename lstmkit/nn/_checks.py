"""Argument validation with messages that name the argument, what was expected and what came."""

from __future__ import annotations

import numbers

import torch
from torch import Tensor


def check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_rate(name: str, value: object, allow_one: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float, got {type(value).__name__} {value!r}")
    hi_ok = value <= 1 if allow_one else value < 1
    if not (value >= 0 and hi_ok):
        interval = "[0, 1]" if allow_one else "[0, 1)"
        raise ValueError(f"{name} must be in {interval}, got {value}")
    return float(value)


def check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return value


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
