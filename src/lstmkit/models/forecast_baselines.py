"""Forecast baselines in the forecasting task's harness: last value, seasonal naive, DLinear.

All take a lookback window ``x`` of shape ``(B, L, C)`` and return ``(B, H, C)``.

- last value: :math:`\\hat y_{L+h} = x_L`.
- seasonal naive of period :math:`m`: :math:`\\hat y_{L+h} = x_{L+h-m\\lceil h/m \\rceil}`,
  the value one (or more) periods before (needs :math:`L \\ge m`).
- DLinear (Zeng et al. 2023, "Are Transformers Effective for Time Series Forecasting?"): the
  lookback is split into a trend, a moving average of width :math:`k` (25 in the paper) with the
  ends padded by repeating the first and last values, and the remainder
  :math:`x - \\mathrm{trend}`; :math:`\\hat y = W_t\\,\\mathrm{trend} + W_r\\,\\mathrm{rem}`,
  two linear maps :math:`L \\to H` over time, per channel (``individual``) or shared.

The parameter-free baselines hold one empty parameter so that the trainer's optimiser has
something to hold; their training steps change nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lstmkit.utils.errors import UserError


class LastValue(nn.Module):
    def __init__(self, horizon: int) -> None:
        super().__init__()
        self.horizon = horizon
        self._none = nn.Parameter(torch.zeros(0))

    def forward(self, x: Tensor, future: Tensor | None = None) -> Tensor:
        return x[:, -1:].expand(-1, self.horizon, -1) + self._none.sum()


class SeasonalNaive(nn.Module):
    def __init__(self, horizon: int, period: int, lookback: int) -> None:
        super().__init__()
        if lookback < period:
            raise UserError(
                f"seasonal naive of period {period} needs --lookback >= {period}, got {lookback}"
            )
        self.horizon, self.period = horizon, period
        self._none = nn.Parameter(torch.zeros(0))

    def forward(self, x: Tensor, future: Tensor | None = None) -> Tensor:
        L, m = x.shape[1], self.period
        h = torch.arange(1, self.horizon + 1, device=x.device)
        src = L - 1 + h - m * torch.ceil(h / m).long()
        return x[:, src] + self._none.sum()


def moving_average(x: Tensor, kernel: int) -> Tensor:
    """Moving average over time of ``(B, L, C)``, the ends padded with the edge values (the
    DLinear code's ``moving_avg``, kernel odd)."""
    pad = (kernel - 1) // 2
    front = x[:, :1].expand(-1, pad, -1)
    back = x[:, -1:].expand(-1, pad, -1)
    xp = torch.cat([front, x, back], 1)
    return F.avg_pool1d(xp.transpose(1, 2), kernel, stride=1).transpose(1, 2)


class DLinear(nn.Module):
    def __init__(
        self, lookback: int, horizon: int, channels: int, kernel: int = 25, individual: bool = False
    ) -> None:
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise UserError(f"--kernel must be odd and >= 1, got {kernel}")
        self.kernel, self.individual = kernel, individual
        n = channels if individual else 1
        self.trend = nn.ModuleList(nn.Linear(lookback, horizon) for _ in range(n))
        self.remainder = nn.ModuleList(nn.Linear(lookback, horizon) for _ in range(n))

    def forward(self, x: Tensor, future: Tensor | None = None) -> Tensor:
        trend = moving_average(x, self.kernel)
        rem = x - trend
        t, r = trend.transpose(1, 2), rem.transpose(1, 2)  # (B, C, L)
        if self.individual:
            out = torch.stack(
                [
                    lt(t[:, c]) + lr(r[:, c])
                    for c, (lt, lr) in enumerate(zip(self.trend, self.remainder, strict=True))
                ],
                1,
            )
        else:
            out = self.trend[0](t) + self.remainder[0](r)
        return out.transpose(1, 2)
