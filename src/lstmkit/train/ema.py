"""Exponential moving average of a model's weights (Polyak-Ruppert averaging), ``--ema``.

After every optimiser step ``t`` each parameter's average moves towards the new weights:

.. math::

    \\bar\\theta_t = d_t\\,\\bar\\theta_{t-1} + (1 - d_t)\\,\\theta_t, \\qquad
    d_t = \\min\\!\\Big(d, \\frac{1 + t}{10 + t}\\Big)

with :math:`\\bar\\theta_0 = \\theta_0`; the ramp on :math:`d_t` (as TensorFlow's
``ExponentialMovingAverage(num_updates=...)``) keeps the early average from being dominated by the
random initial weights. Evaluation, ``best/`` and prediction use :math:`\\bar\\theta`; training
continues from :math:`\\theta`. The average smooths out the step-to-step noise of small-batch
training, which matters most where validation sets are small (Polyak & Juditsky 1992; used by
e.g. QANet and many speech and text classifiers).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from lstmkit.utils.errors import UserError

PREFIX = "ema."


class WeightAverage:
    """The moving average of ``model``'s parameters with decay ``decay`` in (0, 1)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise UserError(f"--ema must be in (0, 1), got {decay}")
        self.decay = decay
        self.named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.average = [p.detach().clone() for _, p in self.named]
        self.updates = 0

    def current_decay(self) -> float:
        t = self.updates
        return min(self.decay, (1 + t) / (10 + t))

    @torch.no_grad()
    def update(self) -> None:
        """Fold the model's current weights into the average (call after each step)."""
        self.updates += 1
        weight = 1.0 - self.current_decay()
        for avg, (_, p) in zip(self.average, self.named, strict=True):
            avg.lerp_(p.detach(), weight)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The model holds the averaged weights inside the block, its own ones after it."""
        saved = [p.detach().clone() for _, p in self.named]
        with torch.no_grad():
            for avg, (_, p) in zip(self.average, self.named, strict=True):
                p.copy_(avg)
        try:
            yield
        finally:
            with torch.no_grad():
                for old, (_, p) in zip(saved, self.named, strict=True):
                    p.copy_(old)

    # ----- resumable state (the trainer checkpoint)
    def tensors(self) -> dict[str, Tensor]:
        return {PREFIX + n: a for (n, _), a in zip(self.named, self.average, strict=True)}

    def load(self, tensors: dict[str, Tensor], updates: int) -> None:
        missing = [PREFIX + n for n, _ in self.named if PREFIX + n not in tensors]
        if missing:
            raise UserError(
                f"--resume: the checkpoint has no weight average for {missing[0]} (was the run "
                "trained without --ema?)"
            )
        with torch.no_grad():
            for avg, (n, _) in zip(self.average, self.named, strict=True):
                avg.copy_(tensors[PREFIX + n])
        self.updates = int(updates)
