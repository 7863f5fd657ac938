"""ONNX export of lstmkit's LSTMs and task models (imported on use: it needs onnx).

:func:`lstm_forward` is the export form of one :class:`lstmkit.LSTM` call, :func:`export_model`
exports a module built on it, :func:`to_onnx` a bare LSTM with its state in and out."""

from lstmkit.export.graph import ExportError, export_model, lstm_forward, onnx_weights, to_onnx

__all__ = ["ExportError", "export_model", "lstm_forward", "onnx_weights", "to_onnx"]
