"""Recurrent models shared by the tasks: an encoder (lstmkit.LSTM, or torch's tanh RNN or GRU as
baselines) and a linear read-out, with the encoder's options as one typed config."""

from __future__ import annotations

from dataclasses import MISSING, asdict, field, fields, make_dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from lstmkit.nn import LSTM, LSTMConfig
from lstmkit.utils.errors import UserError

CELLS = ("lstm", "rnn", "gru")
_TASK_OWNED = {"input_size", "batch_first", "bias"}
_DEFAULTS = {"hidden_size": 128, "forget_bias": 1.0}


def _encoder_fields() -> list[tuple]:
    out = [
        (
            "cell",
            str,
            field(
                default="lstm",
                metadata={
                    "help": "recurrent layer: lstm (lstmkit.LSTM), or the baselines rnn (tanh "
                    "RNN) and gru",
                    "choices": CELLS,
                },
            ),
        )
    ]
    for f in fields(LSTMConfig):
        if f.name in _TASK_OWNED:
            continue
        default = _DEFAULTS.get(f.name, f.default)
        assert default is not MISSING, f.name
        out.append((f.name, f.type, field(default=default, metadata=f.metadata)))
    return out


RecurrentConfig = make_dataclass(
    "RecurrentConfig",
    _encoder_fields(),
    frozen=True,
    namespace={
        "__doc__": "The recurrent encoder of a task model: every :class:`LSTMConfig` option "
        "but the sizes the task decides, plus the cell type (hidden size 128 and forget bias "
        "1.0 by default).",
        "__module__": __name__,
    },
)


def build_encoder(cfg, input_size: int) -> nn.Module:
    """A batch-first recurrent layer from a :data:`RecurrentConfig`."""
    if cfg.cell not in CELLS:
        raise UserError(f"--cell must be one of {', '.join(CELLS)}, got {cfg.cell!r}")
    options = {k: v for k, v in asdict(cfg).items() if k != "cell"}
    if cfg.cell == "lstm":
        try:
            return LSTM.from_config(LSTMConfig(input_size=input_size, batch_first=True, **options))
        except ValueError as e:
            raise UserError(str(e)) from None
    # The baselines take torch's options. An LSTM-only option set away from its default is a
    # mistake worth stopping for (the forget-bias default is simply unused).
    changed = [k for k, v in options.items() if k not in _TORCH_RNN_OPTIONS and v != _default(k)]
    if changed:
        flags = ", ".join("--" + k.replace("_", "-") for k in changed)
        raise UserError(f"{flags}: LSTM options, not available with --cell {cfg.cell}")
    cls = nn.RNN if cfg.cell == "rnn" else nn.GRU
    return cls(
        input_size,
        cfg.hidden_size,
        num_layers=cfg.num_layers,
        batch_first=True,
        dropout=cfg.dropout,
        bidirectional=cfg.bidirectional,
    )


_TORCH_RNN_OPTIONS = {"hidden_size", "num_layers", "dropout", "bidirectional", "backend"}


def _default(name: str):
    return next(f.default for f in fields(RecurrentConfig) if f.name == name)


def encoder_output_size(encoder: nn.Module) -> int:
    size = getattr(encoder, "proj_size", 0) or encoder.hidden_size
    return size * (2 if encoder.bidirectional else 1)


class SequenceModel(nn.Module):
    """Recurrent encoder and a linear read-out, at the last valid step or at every step.

    ``forward(x, lengths)`` takes ``x`` as ``(B, T, I)`` and returns ``(B, out)`` when
    ``per_step`` is False (the output at step ``lengths - 1`` of each sequence; for a
    bidirectional encoder the reverse direction starts at that step too, through packing) and
    ``(B, T, out)`` otherwise.
    """

    def __init__(self, cfg, input_size: int, output_size: int, *, per_step: bool = False):
        super().__init__()
        self.encoder = build_encoder(cfg, input_size)
        self.head = nn.Linear(encoder_output_size(self.encoder), output_size)
        self.per_step = per_step

    def forward(self, x: Tensor, lengths: Tensor | None = None, state=None):
        if lengths is not None and self.encoder.bidirectional:
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            y, state = self.encoder(packed, state)
            y, _ = pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])
        else:
            y, state = self.encoder(x, state)
        if not self.per_step:
            if lengths is None:
                y = y[:, -1]
            else:
                last = (lengths.to(y.device) - 1).clamp(min=0)
                y = y[torch.arange(y.shape[0], device=y.device), last]
        return self.head(y)
