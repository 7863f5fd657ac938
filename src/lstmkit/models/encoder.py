"""Recurrent models shared by the tasks: an encoder (lstmkit.LSTM, or torch's tanh RNN or GRU as
baselines) and a linear read-out, with the encoder's options as one typed config.

:class:`RecurrentConfig` is derived from :class:`~lstmkit.nn.LSTMConfig` (every option but the
sizes a model decides), so the recurrent options and their help are defined once; a model's
config nests it as its ``encoder`` section. :func:`lstm_option_fields` gives the same fields to
the sections of models that take lstmkit's LSTM only (the seq2seq encoder and decoder)."""

from __future__ import annotations

import numbers
from dataclasses import MISSING, asdict, field, fields, make_dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from lstmkit.nn import LSTM, LSTMConfig
from lstmkit.utils.errors import UserError

CELLS = ("lstm", "rnn", "gru")
_TASK_OWNED = {"input_size", "batch_first", "bias"}
_DEFAULTS = {"hidden_size": 128, "forget_bias": 1.0}
_TORCH_RNN_OPTIONS = {"hidden_size", "num_layers", "dropout", "bidirectional", "backend"}


def lstm_option_fields(
    defaults: dict[str, object], skip: set[str] | frozenset[str] = frozenset(), what: str = ""
) -> list[tuple]:
    """``make_dataclass`` fields of every :class:`LSTMConfig` option a model sets (all but
    ``input_size``, ``batch_first``, ``bias`` and ``skip``), with ``defaults`` over LSTMConfig's
    and the help prefixed by ``what`` (``"encoder: "``)."""
    out = []
    for f in fields(LSTMConfig):
        if f.name in _TASK_OWNED | set(skip):
            continue
        default = defaults.get(f.name, f.default)
        assert default is not MISSING, f.name
        meta = {**f.metadata, "help": what + f.metadata["help"]}
        out.append((f.name, f.type, field(default=default, metadata=meta)))
    return out


def _check_size(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise UserError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise UserError(f"{name} must be >= {minimum}, got {value}")


def check_lstm_options(cfg: object, prefix: str = "", *, stacked: bool = True) -> None:
    """The checks :class:`lstmkit.LSTM` makes of these options, made on the config: sizes,
    rates and variants (through :class:`LSTMConfig`), and for a ``stacked`` layer (not a stack
    of cells) the projection and the dropout between layers. Options missing from ``cfg`` (a
    decoder's) take LSTMConfig's defaults. ``prefix`` names a section's options (``dec_``)."""
    _check_size(prefix + "hidden_size", cfg.hidden_size, 1)
    _check_size(prefix + "num_layers", cfg.num_layers, 1)
    options = {f.name: getattr(cfg, f.name) for f in fields(cfg)}
    options.pop("cell", None)
    try:
        LSTMConfig(input_size=1, batch_first=True, **options)
    except (TypeError, ValueError) as e:
        raise UserError(f"{e} (of the {prefix}* options)" if prefix else str(e)) from None
    if not stacked:
        return
    proj = options.get("proj_size", 0)
    _check_size(prefix + "proj_size", proj, 0)
    if proj >= cfg.hidden_size:
        raise UserError(
            f"{prefix}proj_size must be smaller than {prefix}hidden_size, got {prefix}proj_size="
            f"{proj} >= {prefix}hidden_size={cfg.hidden_size}"
        )
    if cfg.dropout > 0 and cfg.num_layers == 1:
        raise UserError(
            f"{prefix}dropout={cfg.dropout} acts between layers, so it needs {prefix}num_layers "
            "> 1 (got 1); for dropout inside the recurrence use recurrent_dropout or "
            "zoneout_h/zoneout_c"
        )


def _check_recurrent(cfg) -> None:
    """:class:`RecurrentConfig`'s checks: the cell, then lstmkit.LSTM's checks for an LSTM, and
    for the baselines that no LSTM-only option is set away from its default (a mistake worth
    stopping for; the forget-bias default is simply unused)."""
    if cfg.cell not in CELLS:
        raise UserError(f"--cell must be one of {', '.join(CELLS)}, got {cfg.cell!r}")
    if cfg.cell == "lstm":
        check_lstm_options(cfg)
        return
    options = {k: v for k, v in asdict(cfg).items() if k != "cell"}
    changed = [k for k, v in options.items() if k not in _TORCH_RNN_OPTIONS and v != _default(k)]
    if changed:
        flags = ", ".join("--" + k.replace("_", "-") for k in changed)
        raise UserError(f"{flags}: LSTM options, not available with --cell {cfg.cell}")
    _check_size("hidden_size", cfg.hidden_size, 1)
    _check_size("num_layers", cfg.num_layers, 1)
    if not (isinstance(cfg.dropout, numbers.Real) and 0 <= cfg.dropout <= 1):
        raise UserError(f"dropout must be in [0, 1], got {cfg.dropout!r}")


RecurrentConfig = make_dataclass(
    "RecurrentConfig",
    [
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
        ),
        *lstm_option_fields(_DEFAULTS),
    ],
    frozen=True,
    namespace={
        "__doc__": "The recurrent encoder of a task model: every :class:`LSTMConfig` option "
        "but the sizes the task decides, plus the cell type (hidden size 128 and forget bias "
        "1.0 by default). Checked on construction (:func:`check_lstm_options` for an LSTM; "
        "no LSTM-only option for the rnn and gru baselines).",
        "__module__": __name__,
        "__post_init__": _check_recurrent,
    },
)


def _default(name: str):
    return next(f.default for f in fields(RecurrentConfig) if f.name == name)


def build_encoder(cfg, input_size: int) -> nn.Module:
    """A batch-first recurrent layer from a :data:`RecurrentConfig` (checked when it was
    made)."""
    options = {k: v for k, v in asdict(cfg).items() if k != "cell"}
    if cfg.cell == "lstm":
        try:
            return LSTM.from_config(LSTMConfig(input_size=input_size, batch_first=True, **options))
        except ValueError as e:
            raise UserError(str(e)) from None
    cls = nn.RNN if cfg.cell == "rnn" else nn.GRU
    return cls(
        input_size,
        cfg.hidden_size,
        num_layers=cfg.num_layers,
        batch_first=True,
        dropout=cfg.dropout,
        bidirectional=cfg.bidirectional,
    )


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
