"""Forecast losses and metrics: likelihoods (Gaussian, Student-t), the pinball loss, MSE/MAE,
MASE, CRPS and interval coverage.

- Gaussian NLL: :math:`\\tfrac12\\log(2\\pi\\sigma^2) + (y-\\mu)^2/(2\\sigma^2)`.
- Student-t NLL (DeepAR's heavy-tailed option), with :math:`z = (y-\\mu)/\\sigma`:
  :math:`-\\log\\Gamma(\\tfrac{\\nu+1}2) + \\log\\Gamma(\\tfrac\\nu2) + \\tfrac12\\log(\\nu\\pi)
  + \\log\\sigma + \\tfrac{\\nu+1}2\\log(1 + z^2/\\nu)`.
- Pinball loss of quantile :math:`q`: :math:`\\max(q(y-\\hat y), (q-1)(y-\\hat y))`.
- CRPS of a Gaussian (Gneiting & Raftery 2007), :math:`z = (y-\\mu)/\\sigma`:
  :math:`\\sigma\\,[z(2\\Phi(z)-1) + 2\\varphi(z) - 1/\\sqrt\\pi]`; of samples :math:`X_i`:
  :math:`\\tfrac1n\\sum_i|X_i-y| - \\tfrac1{2n^2}\\sum_{i,j}|X_i-X_j|`; of quantiles: twice the
  mean pinball loss over the levels (a discretisation of :math:`\\int_0^1 2\\rho_q\\,dq`).
- MASE (Hyndman & Koehler 2006): MAE over the in-sample MAE of the seasonal naive forecast of
  period :math:`m` on the training range.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def gaussian_nll(y: Tensor, mu: Tensor, sigma: Tensor) -> Tensor:
    """Elementwise negative log-likelihood of ``y`` under N(mu, sigma^2)."""
    z = (y - mu) / sigma
    return 0.5 * math.log(2 * math.pi) + torch.log(sigma) + 0.5 * z * z


def student_t_nll(y: Tensor, mu: Tensor, sigma: Tensor, df: Tensor) -> Tensor:
    """Elementwise negative log-likelihood of ``y`` under a Student-t (df, loc mu, scale sigma)."""
    z = (y - mu) / sigma
    return (
        -torch.lgamma((df + 1) / 2)
        + torch.lgamma(df / 2)
        + 0.5 * torch.log(df * math.pi)
        + torch.log(sigma)
        + (df + 1) / 2 * torch.log1p(z * z / df)
    )


def pinball(y: Tensor, q_pred: Tensor, levels: Tensor) -> Tensor:
    """Elementwise pinball loss; ``q_pred`` has the levels last, ``y`` is broadcast over them."""
    d = y.unsqueeze(-1) - q_pred
    return torch.maximum(levels * d, (levels - 1) * d)


def crps_gaussian(y: Tensor, mu: Tensor, sigma: Tensor) -> Tensor:
    z = (y - mu) / sigma
    normal = torch.distributions.Normal(0.0, 1.0)
    pdf = torch.exp(normal.log_prob(z))
    return sigma * (z * (2 * normal.cdf(z) - 1) + 2 * pdf - 1 / math.sqrt(math.pi))


def crps_samples(y: Tensor, samples: Tensor) -> Tensor:
    """CRPS from samples along dim 0 (the unbiased-in-y, plug-in energy form)."""
    n = samples.shape[0]
    first = (samples - y).abs().mean(0)
    # E|X - X'| from sorted samples in O(n log n): sum_i (2i - n + 1) x_(i) * 2 / n^2
    s, _ = samples.sort(0)
    k = torch.arange(n, dtype=s.dtype, device=s.device).view(-1, *([1] * (s.dim() - 1)))
    spread = (2 * (2 * k - n + 1) * s).sum(0) / (n * n)
    return first - 0.5 * spread


def crps_quantiles(y: Tensor, q_pred: Tensor, levels: Tensor) -> Tensor:
    return 2 * pinball(y, q_pred, levels).mean(-1)


def seasonal_scale(train_values: Tensor, season: int) -> Tensor:
    """MASE's denominator per column: mean |x_t - x_{t-m}| over the training rows."""
    if train_values.shape[0] <= season:
        return torch.ones(train_values.shape[1:], dtype=train_values.dtype)
    d = (train_values[season:] - train_values[:-season]).abs().mean(0)
    return torch.where(d > 0, d, torch.ones_like(d))
