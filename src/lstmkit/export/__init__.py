"""Export of lstmkit models (ONNX). Imported on use: it imports onnx and onnxscript.

- :func:`lstm_forward`: the export form of one LSTM call (packing semantics, eval mode).
- :func:`export_model`: any module whose LSTMs go through lstm_forward, as an ONNX file.
- :func:`to_onnx`: a bare :class:`lstmkit.LSTM` with explicit state in and out.
"""

from lstmkit.export.onnx_graph import MIN_OPSET, expand_lstm_nodes, export_model, to_onnx
from lstmkit.export.onnx_lstm import ExportError, lstm_forward

__all__ = [
    "MIN_OPSET",
    "ExportError",
    "expand_lstm_nodes",
    "export_model",
    "lstm_forward",
    "to_onnx",
]
