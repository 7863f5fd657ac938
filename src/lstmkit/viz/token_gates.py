"""The gates and cell state of a token model's top LSTM layer over one token sequence, drawn as
a PNG (``lstmkit inspect`` of a language model)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from lstmkit.nn import record_gates
from lstmkit.viz.plots import plot_gates


def step_label(text: str) -> str:
    """A token's text as a tick label: stripped, or escaped when it is only white space."""
    return text.strip() or repr(text)[1:-1]


def plot_top_layer(
    model: nn.Module,
    ids: Sequence[int],
    pieces: Sequence[str],
    path: str | os.PathLike,
    device: torch.device | str,
    title: str,
) -> Path:
    """Run ``model`` (a ``model(tokens, state)`` over an ``encoder`` :class:`lstmkit.LSTM`) on
    ``ids`` from a zero state, and draw the ``i, f, o`` gates and the cell state ``c`` of its
    top layer, each step labelled by its token's text (``pieces``)."""
    with torch.no_grad(), record_gates(model) as rec:
        model(torch.tensor([list(ids)], device=device), None)
    trace = rec[model.encoder.num_layers - 1, 0]
    gates = {g: getattr(trace, g)[0].cpu() for g in ("i", "f", "o", "c")}
    labels = [step_label(p) for p in pieces]
    return plot_gates(gates, Path(path), step_labels=labels, title=title)
