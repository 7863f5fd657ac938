"""The interface every recurrence backend shares: its named inputs, saved tensors and grads.

Every backend (the eager autograd reference, the hand-written PyTorch backward, the fused C++
kernel, the Triton kernels) takes the same arguments::

    forward(inputs: RecurrenceInputs, batch_sizes, reverse, opts, save)
        -> out (T, B, P), h_n (B, P), c_n (B, H), SavedTensors | None
    backward(inputs, saved, dout, dh_n, dc_n, batch_sizes, reverse, opts, needs_grad=None)
        -> RecurrenceGrads

``batch_sizes`` is None or a ``(T,)`` CPU int64 tensor (packed sequences), ``reverse`` runs
from ``T-1`` down to ``0`` and ``opts`` is a :class:`~lstmkit.reference.options.CellOptions`.
The tensors travel by name: :class:`RecurrenceInputs` is what the scan reads,
:class:`SavedTensors` what the forward keeps for the backward (the same names in
``lstm.cpp`` and the Triton kernels), :class:`RecurrenceGrads` the gradients of the
differentiable inputs.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from lstmkit.reference.options import CellOptions, check_eps


class RecurrenceInputs(NamedTuple):
    """The tensors of one recurrence (one layer, one direction), after the input projection.

    For one step (:func:`lstmkit.reference.lstm.lstm_recurrent_step`) the same fields hold one
    step's slices: ``xg (B, 4H)``, ``zoneout_h (B, P)``, ``zoneout_c (B, H)``.
    """

    xg: Tensor  # (T, B, 4H) x W_ih^T + b_ih for every step (layer norm included)
    h0: Tensor  # (B, P)
    c0: Tensor  # (B, H)
    weight_hh: Tensor  # (4H, P)
    bias_hh: Tensor | None = None  # (4H,)
    weight_hr: Tensor | None = None  # (P, H) projection
    weight_ci: Tensor | None = None  # (H,) peepholes, a set: ci, cf, co
    weight_cf: Tensor | None = None  # (H,)
    weight_co: Tensor | None = None  # (H,)
    ln_weight_hh: Tensor | None = None  # (4H,) layer norm on h W_hh^T
    ln_weight_c: Tensor | None = None  # (H,) layer norm on c before the output tanh
    ln_bias_c: Tensor | None = None  # (H,)
    zoneout_h: Tensor | None = None  # (T, B, P) keep-previous weights: 0/1 masks or the rate
    zoneout_c: Tensor | None = None  # (T, B, H)
    dropout_h: Tensor | None = None  # (B, P) one recurrent dropout mask, scaled by 1/(1-p)


class RecurrenceGrads(NamedTuple):
    """Gradients of the differentiable :class:`RecurrenceInputs` (the masks have none)."""

    xg: Tensor | None = None
    h0: Tensor | None = None
    c0: Tensor | None = None
    weight_hh: Tensor | None = None
    bias_hh: Tensor | None = None
    weight_hr: Tensor | None = None
    weight_ci: Tensor | None = None
    weight_cf: Tensor | None = None
    weight_co: Tensor | None = None
    ln_weight_hh: Tensor | None = None
    ln_weight_c: Tensor | None = None
    ln_bias_c: Tensor | None = None


class SavedTensors(NamedTuple):
    """What the forward keeps for the backward; None where the variant has no such tensor."""

    gates: Tensor  # (T, B, 4H) activated i|f|g|o
    c_prev: Tensor  # (T, B, H) the cell state entering each step
    h_in: Tensor  # (T, B, P) what multiplied W_hh (after recurrent dropout)
    c_new: Tensor  # (T, B, H) the cell before zoneout
    c_out: Tensor  # (T, B, H) what went into the output tanh (c_new without the cell norm)
    r_hat: Tensor | None = None  # (T, B, 4H) normalised h W_hh^T (layer norm)
    rstd_hh: Tensor | None = None  # (T, B, 1)
    c_hat: Tensor | None = None  # (T, B, H) normalised c (layer norm)
    rstd_c: Tensor | None = None  # (T, B, 1)
    m: Tensor | None = None  # (T, B, H) the output before the projection

    def present(self) -> dict[str, Tensor]:
        """``{name: tensor}`` of the tensors this variant saved."""
        return {k: v for k, v in zip(self._fields, self, strict=True) if v is not None}


GRAD_FIELDS = RecurrenceGrads._fields
N_GRAD_ARGS = len(GRAD_FIELDS)  # xg .. ln_bias_c carry gradients, the masks do not
_REQUIRED = frozenset(("xg", "h0", "c0", "weight_hh"))


def check_recurrence_args(
    inputs: RecurrenceInputs, batch_sizes: Tensor | None, opts: CellOptions
) -> None:
    """Raise ValueError/TypeError unless ``inputs`` and ``batch_sizes`` are what every backend
    assumes.

    The kernels take raw pointers: one dtype and device for all tensors, strided layout, these
    shapes, and ``batch_sizes`` a CPU int64 ``(T,)`` with entries in ``[0, B]`` (the Triton
    kernels index memory with it unchecked). Contiguity is not required: every backend makes
    its own contiguous copies. Only metadata is read, plus two reductions over ``batch_sizes``.
    """
    if not isinstance(inputs, RecurrenceInputs):
        raise TypeError(f"the recurrence takes RecurrenceInputs, got {type(inputs).__name__}")
    xg = inputs.xg
    if not torch.is_tensor(xg):
        raise TypeError(f"xg must be a tensor, got {type(xg).__name__}")
    if xg.dim() != 3 or xg.shape[2] == 0 or xg.shape[2] % 4:
        raise ValueError(f"xg must be (T, B, 4H) with H >= 1, got shape {tuple(xg.shape)}")
    if not xg.is_floating_point():
        raise TypeError(f"xg must be a floating-point tensor, got {xg.dtype}")
    T, B, G = xg.shape
    H = G // 4
    h0 = inputs.h0
    P = h0.shape[-1] if torch.is_tensor(h0) and h0.dim() == 2 else -1
    if P < 1:
        raise ValueError(
            f"h0 must be a (B, P) tensor with P >= 1, got {getattr(h0, 'shape', type(h0))}"
        )
    shapes = RecurrenceInputs(
        (T, B, G),
        (B, P),
        (B, H),
        (G, P),
        (G,),
        (P, H),
        (H,),
        (H,),
        (H,),
        (G,),
        (H,),
        (H,),
        (T, B, P),
        (T, B, H),
        (B, P),
    )
    dtype, device = xg.dtype, xg.device
    for name, t, shape in zip(RecurrenceInputs._fields, inputs, shapes, strict=True):
        if t is None:
            if name in _REQUIRED:
                raise TypeError(f"{name} is required, got None")
            continue
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a tensor or None, got {type(t).__name__}")
        if t.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
        if t.dtype != dtype or t.device != device:
            raise TypeError(
                f"{name} is {t.dtype} on {t.device}, but xg is {dtype} on {device}; "
                "every recurrence tensor has the same dtype and device"
            )
        if t.layout != torch.strided:
            raise TypeError(f"{name} must be a dense (strided) tensor, got layout {t.layout}")
    if inputs.weight_hr is None and P != H:
        raise ValueError(f"without weight_hr, h0 must have H = {H} features, got P = {P}")
    if inputs.ln_weight_c is not None or inputs.ln_weight_hh is not None:
        check_eps("layer_norm_eps", opts.layer_norm_eps)
    if batch_sizes is None:
        return
    bs = batch_sizes
    if not torch.is_tensor(bs) or bs.dim() != 1 or bs.dtype != torch.int64 or bs.is_cuda:
        raise ValueError(
            "batch_sizes must be a 1-D int64 CPU tensor, got "
            + (
                f"{bs.dim()}-D {bs.dtype} on {bs.device}"
                if torch.is_tensor(bs)
                else type(bs).__name__
            )
        )
    if bs.device.type != "cpu" or bs.shape[0] != T:
        raise ValueError(f"batch_sizes must be a CPU tensor of shape (T,) = ({T},), got {bs.shape}")
    vals = bs.tolist()
    if vals and (min(vals) < 0 or max(vals) > B):
        raise ValueError(f"batch_sizes must be in [0, B = {B}], got {vals}")
