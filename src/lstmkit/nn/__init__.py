"""Modules: :class:`LSTM`, :class:`LSTMCell`, gate recording and the config."""

from lstmkit.nn._cell import LSTMCell
from lstmkit.nn._lstm import LSTM
from lstmkit.nn._record import GateRecorder, GateTrace, record_gates
from lstmkit.nn.config import LSTMConfig

__all__ = ["LSTM", "LSTMCell", "LSTMConfig", "GateRecorder", "GateTrace", "record_gates"]
