"""lstmkit: LSTM networks for PyTorch.

A drop-in for :class:`torch.nn.LSTM` and :class:`torch.nn.LSTMCell` with the LSTM variants
(layer norm, peepholes, coupled gates, no forget gate, projection, zoneout, recurrent dropout),
fused kernels, and gate introspection; and :func:`load` for the runs that ``lstmkit train``
writes (``lstmkit.load("runs/mr").predict(["a gripping film"])``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lstmkit.api import Run
    from lstmkit.infer.stream import Stream
    from lstmkit.nn import LSTM, GateRecorder, GateTrace, LSTMCell, LSTMConfig, record_gates
    from lstmkit.nn.quantized import QuantizedLSTM, quantize
    from lstmkit.reference.lstm import GATE_ORDER

_LAZY = {
    **dict.fromkeys(
        ("LSTM", "GateRecorder", "GateTrace", "LSTMCell", "LSTMConfig", "record_gates"),
        "lstmkit.nn",
    ),
    "GATE_ORDER": "lstmkit.reference.lstm",
    **dict.fromkeys(("quantize", "QuantizedLSTM"), "lstmkit.nn.quantized"),
    "Stream": "lstmkit.infer.stream",
}
"""Names imported on first use, so that the torch-free parts (the tokenizers, the audio
features, ``lstmkit.infer.onnx_predict``) import without torch."""


def __getattr__(name: str):
    import importlib

    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lstmkit' has no attribute {name!r}")


__version__ = "0.1.0"


def load(path: str | os.PathLike, device: str = "auto", *, allow_nonfinite: bool = False) -> Run:
    """The trained run at ``path`` (a run folder of ``lstmkit train``, or its ``best/`` or
    ``last/`` checkpoint) as a :class:`lstmkit.api.Run`: ``run.predict([...])``,
    ``run.evaluate()``, ``run.generate(...)``, ``run.translate([...])``,
    ``run.transcribe([...])``, ``run.inspect([...])``, and ``run.model``, the torch module in
    eval mode. See :func:`lstmkit.api.load`.

    The tasks and the trainer are imported on the first call, not by ``import lstmkit``."""
    from lstmkit.api import load as _load

    return _load(path, device, allow_nonfinite=allow_nonfinite)


__all__ = [
    "GATE_ORDER",
    "LSTM",
    "LSTMCell",
    "LSTMConfig",
    "GateRecorder",
    "GateTrace",
    "record_gates",
    "quantize",
    "QuantizedLSTM",
    "Stream",
    "load",
    "__version__",
]
