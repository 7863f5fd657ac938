"""lstmkit: LSTM networks for PyTorch.

A drop-in for :class:`torch.nn.LSTM` and :class:`torch.nn.LSTMCell` with the LSTM variants
(layer norm, peepholes, coupled gates, no forget gate, projection, zoneout, recurrent dropout),
fused kernels, and gate introspection.
"""

from lstmkit.nn import LSTM, GateRecorder, GateTrace, LSTMCell, LSTMConfig, record_gates
from lstmkit.reference.lstm import GATE_ORDER

__version__ = "0.1.0"

__all__ = [
    "GATE_ORDER",
    "LSTM",
    "LSTMCell",
    "LSTMConfig",
    "GateRecorder",
    "GateTrace",
    "record_gates",
    "__version__",
]
