"""The variant options of an LSTM, validated once: what :class:`lstmkit.LSTM`,
:class:`lstmkit.LSTMCell`, :class:`lstmkit.LSTMConfig` and the backend dispatch all read.

:class:`VariantOptions` holds every option that changes the math of the recurrence or its
parameters beyond :class:`torch.nn.LSTM`'s; :class:`CellOptions` is the part every kernel takes
as compile-time switches. The scalar checks name the bad argument and value (as PyTorch's
``RNNBase.__init__`` does); :mod:`lstmkit.nn` reuses them for its own arguments.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass


def check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return value


def check_rate(name: str, value: object, allow_one: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float, got {type(value).__name__} {value!r}")
    hi_ok = value <= 1 if allow_one else value < 1
    if not (value >= 0 and hi_ok):
        interval = "[0, 1]" if allow_one else "[0, 1)"
        raise ValueError(f"{name} must be in {interval}, got {value}")
    return float(value)


def check_finite(name: str, value: object) -> float:
    """A real number that is neither nan nor infinite."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    return float(value)


def check_eps(name: str, value: object) -> float:
    """A positive, finite float (a layer norm's epsilon)."""
    if not (isinstance(value, float) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite float, got {value!r}")
    return value


@dataclass(frozen=True)
class CellOptions:
    """Compile-time switches of the recurrence; every kernel takes the same ones.

    ``coupled``: CIFG, ``f = 1 - i`` (Greff et al. 2017). ``forget_gate=False``: the 1997
    LSTM, ``f = 1``. The forget-gate rows of the weights stay in place for both, unused, so that
    parameter shapes match :class:`torch.nn.LSTM`.
    """

    coupled: bool = False
    forget_gate: bool = True
    layer_norm_eps: float = 1e-5


DEFAULT_OPTS = CellOptions()  # the vanilla switches, the default of every opts argument


@dataclass(frozen=True)
class VariantOptions:
    """The variant options of one LSTM layer or cell, checked on construction.

    See :class:`lstmkit.LSTM` for what each one means. ``weight_drop`` (DropConnect on
    ``W_hh``) and ``forget_bias`` (an initial value) leave the recurrence itself vanilla.
    """

    layer_norm: bool = False
    peephole: bool = False
    coupled: bool = False
    forget_gate: bool = True
    zoneout_h: float = 0.0
    zoneout_c: float = 0.0
    recurrent_dropout: float = 0.0
    weight_drop: float = 0.0
    forget_bias: float = 0.0
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("layer_norm", "peephole", "coupled", "forget_gate"):
            check_bool(name, getattr(self, name))
        for name in ("zoneout_h", "zoneout_c", "recurrent_dropout"):
            object.__setattr__(self, name, check_rate(name, getattr(self, name)))
        if self.coupled and not self.forget_gate:
            raise ValueError(
                "coupled=True (f = 1 - i) and forget_gate=False (f = 1) contradict each other; "
                "choose one"
            )
        object.__setattr__(self, "forget_bias", check_finite("forget_bias", self.forget_bias))
        check_eps("layer_norm_eps", self.layer_norm_eps)
        object.__setattr__(self, "weight_drop", check_rate("weight_drop", self.weight_drop))

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        return tuple(cls.__dataclass_fields__)

    @classmethod
    def from_object(cls, obj: object) -> VariantOptions:
        """The options read by name off ``obj`` (a config, or anything with these attributes)."""
        return cls(**{name: getattr(obj, name) for name in cls.fields()})

    @property
    def is_vanilla(self) -> bool:
        """True when the recurrence's math is exactly torch.nn.LSTM's."""
        return not (
            self.layer_norm
            or self.peephole
            or self.coupled
            or not self.forget_gate
            or self.zoneout_h
            or self.zoneout_c
            or self.recurrent_dropout
        )

    @property
    def cell_options(self) -> CellOptions:
        return CellOptions(self.coupled, self.forget_gate, self.layer_norm_eps)
