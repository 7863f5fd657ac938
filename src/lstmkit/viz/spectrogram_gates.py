"""A recording's log-mel spectrogram over the gates of a speech model's first LSTM layer, at
the model's frame rate, with the frames a task marks (a CTC model's emissions)."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lstmkit.viz import plots


def mel_centers(spec: Any) -> list[float]:
    """Centre frequencies (Hz) of the mel bins of a :class:`lstmkit.data.audio.FeatureSpec`:
    evenly spaced on 1127 ln(1 + f/700)."""
    top = 1127.0 * math.log1p(spec.sample_rate / 2 / 700.0)
    mels = np.linspace(0.0, top, spec.n_mels + 2)[1:-1]
    return (700.0 * np.expm1(mels / 1127.0)).tolist()


def plot_spectrogram_gates(
    trace: Any,
    logmel: np.ndarray,
    out: str | os.PathLike,
    n: int,
    audio_path: str,
    *,
    spec: Any,
    subsample: int,
    what: str,
    marks: Sequence[int],
) -> Path:
    """Write ``OUT/N-STEM.png``: the ``(T, n_mels)`` log-mel frames ``logmel`` of ``audio_path``
    averaged over each ``subsample`` frames (the model's steps) above the i, f, o, c of
    ``trace`` (a :class:`lstmkit.nn.GateTrace` of the first layer's forward direction, batch
    of one); ``what`` (the model's answer) goes in the title, ``marks`` are steps to mark."""
    gates = {g: getattr(trace, g)[0].cpu() for g in ("i", "f", "o", "c")}
    T = gates["i"].shape[0]
    k = subsample
    logmel = np.pad(logmel, ((0, (-len(logmel)) % k), (0, 0)), mode="edge")
    spectrogram = logmel.reshape(-1, k, logmel.shape[1]).mean(1)[:T]
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(audio_path).stem)
    return plots.plot_gates(
        gates,
        Path(out) / f"{n}-{stem}.png",
        inputs=spectrogram,
        input_labels=[f"{hz:.0f} Hz" for hz in mel_centers(spec)],
        marks=[m for m in marks if 0 <= m < T],
        title=f"{Path(audio_path).name}: {what}\ninputs: log-mel spectrogram; below: "
        f"gates of layer 1, forward direction; {spec.hop_ms * k:g} ms per step",
    )
