r"""The LSTM variants, one small pure function each.

- Peepholes (Gers & Schmidhuber 2000): diagonal weights from the cell to the gates,
  :math:`i = \sigma(i_{pre} + w_{ci} \odot c_{t-1})`, :math:`f = \sigma(f_{pre} + w_{cf} \odot
  c_{t-1})`, :math:`o = \sigma(o_{pre} + w_{co} \odot c_t)`.
- Layer normalization (Ba et al. 2016, as haste's LayerNormLSTM):
  :math:`\text{gates} = LN(x W_{ih}^T)\gamma_{ih} + b_{ih} + LN(h W_{hh}^T)\gamma_{hh} + b_{hh}`
  and :math:`h_t = o \odot \tanh(LN(c_t)\gamma_c + \beta_c)`.
- Coupled input-forget gate (CIFG, Greff et al. 2017): :math:`f = 1 - i`.
- Zoneout (Krueger et al. 2017): :math:`h_t = d \odot h_{t-1} + (1 - d) \odot \tilde h_t` with
  :math:`d \sim \text{Bernoulli}(z)` per unit and step in training and :math:`d = z` in eval.
- Variational recurrent dropout (Gal & Ghahramani 2016): one mask per sequence on
  :math:`h_{t-1}` before :math:`W_{hh}`.
"""

from __future__ import annotations

import torch
from torch import Tensor


def layer_norm_normalize(x: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """``x_hat = (x - mean) * rstd`` and ``rstd = 1 / sqrt(var + eps)`` over the last dimension
    (biased var); the backward reads both."""
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    rstd = torch.rsqrt(var + eps)
    return (x - mu) * rstd, rstd


def layer_norm(x: Tensor, weight: Tensor, bias: Tensor | None, eps: float) -> Tensor:
    """``(x - mean) / sqrt(var + eps) * weight + bias`` over the last dimension (biased var)."""
    y = layer_norm_normalize(x, eps)[0] * weight
    return y if bias is None else y + bias


def peephole_input_forget(
    i_pre: Tensor, f_pre: Tensor, c_prev: Tensor, weight_ci: Tensor, weight_cf: Tensor | None
) -> tuple[Tensor, Tensor]:
    """The input and forget gates look at the previous cell state."""
    i_pre = i_pre + weight_ci * c_prev
    if weight_cf is not None:
        f_pre = f_pre + weight_cf * c_prev
    return i_pre, f_pre


def peephole_output(o_pre: Tensor, c: Tensor, weight_co: Tensor) -> Tensor:
    """The output gate looks at the new cell state."""
    return o_pre + weight_co * c


def coupled_forget_gate(i: Tensor) -> Tensor:
    """CIFG: forget exactly as much as is written, ``f = 1 - i``."""
    return 1.0 - i


def apply_zoneout(new: Tensor, prev: Tensor, keep: Tensor) -> Tensor:
    """``keep * prev + (1 - keep) * new``; ``keep`` is a 0/1 mask (train) or the rate (eval)."""
    return keep * prev + (1.0 - keep) * new


def zoneout_mask(shape: tuple[int, ...], rate: float, training: bool, like: Tensor) -> Tensor:
    """Per-unit, per-step keep-previous weights: Bernoulli(rate) in training, ``rate`` in eval."""
    if training:
        return torch.bernoulli(torch.full(shape, rate, dtype=like.dtype, device=like.device))
    return torch.full(shape, rate, dtype=like.dtype, device=like.device)


def variational_dropout_mask(shape: tuple[int, ...], p: float, like: Tensor) -> Tensor:
    """One inverted-dropout mask for a whole sequence: 0 with probability p, else 1/(1-p)."""
    keep = torch.full(shape, 1.0 - p, dtype=like.dtype, device=like.device)
    return torch.bernoulli(keep) / (1.0 - p)
