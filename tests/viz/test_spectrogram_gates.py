"""The spectrogram-over-gates plot of a speech model: mel centres, the spectrogram at the
model's frame rate, the file name, the marks inside the steps, the title."""

import numpy as np
import torch

from lstmkit.data.audio import FeatureSpec
from lstmkit.nn import GateTrace
from lstmkit.viz import plots
from lstmkit.viz.spectrogram_gates import mel_centers, plot_spectrogram_gates


def test_mel_centres_rise_below_nyquist():
    hz = mel_centers(FeatureSpec(sample_rate=8000, n_mels=10))
    assert len(hz) == 10 and all(a < b for a, b in zip(hz, hz[1:], strict=False))
    assert 0 < hz[0] < 200 and hz[-1] < 4000


def test_plot_spectrogram_gates(tmp_path, monkeypatch):
    T, H, k = 4, 3, 2
    trace = GateTrace("encoder", 0, 0, *(torch.rand(1, T, H) for _ in range(6)))
    logmel = np.arange(7 * 5, dtype=np.float32).reshape(7, 5)  # 7 frames: padded to 8, 4 steps
    drawn = []
    real = plots.plot_gates
    monkeypatch.setattr(
        plots, "plot_gates", lambda *a, **kw: drawn.append((a, kw)) or real(*a, **kw)
    )
    spec = FeatureSpec(sample_rate=8000, n_mels=5, hop_ms=10.0)
    path = plot_spectrogram_gates(
        trace,
        logmel,
        tmp_path,
        2,
        "dir/a b.wav",
        spec=spec,
        subsample=k,
        what="'7'",
        marks=[-1, 0, 3, 4],
    )
    assert path == tmp_path / "2-a_b.png" and path.read_bytes()[:4] == b"\x89PNG"
    (gates, _), kw = drawn[0]
    assert set(gates) == {"i", "f", "o", "c"} and gates["f"].shape == (T, H)
    np.testing.assert_allclose(kw["inputs"][0], logmel[:2].mean(0))
    np.testing.assert_allclose(kw["inputs"][3], logmel[6])  # the last frame repeated
    assert kw["marks"] == [0, 3]
    assert kw["input_labels"][0].endswith(" Hz") and len(kw["input_labels"]) == 5
    assert (
        kw["title"].startswith("a b.wav: '7'\ninputs: log-mel spectrogram")
        and "20 ms per step" in kw["title"]
    )
