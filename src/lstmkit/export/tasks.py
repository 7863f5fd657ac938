r"""Export forms of the task models: one ``nn.Module`` per model with a deployment signature
(tensors in, tensors out, no packed sequences, no Python data), each equal to the model's eval
output, for :func:`lstmkit.export.export_model`.

The models pack their padded batches (``pack_padded_sequence``) so that padding never enters a
recurrence; that needs the lengths on the host, which no graph can express. The wrappers call
:func:`lstmkit.export.lstm_forward` with the lengths instead: the same semantics (outputs zero
past each length, the final state at each sequence's last valid step, the reverse direction
starting at ``length - 1``), as native ONNX ``LSTM`` nodes with ``sequence_lens`` or a ``Scan``.

============================  ==========================================================
model                         graph
============================  ==========================================================
:class:`SequenceModelExport`  ``x (B, T, I), lengths (B,) -> y (B, O)`` or ``(B, T, O)``
:class:`ClassifierExport`     ``tokens (B, T) int64, lengths (B,) -> logits (B, C)``
:class:`LanguageModelExport`  ``tokens (B, T), h (L, B, P), c (L, B, H) -> logits (B, T, V),
                              h, c`` (the state in and out: a deployed model streams)
:class:`WordsExport`          ``features (B, T, F), lengths (B,) -> logits (B, C)``
:class:`CtcExport`            ``features (B, T, F), lengths (B,) -> log_probs (B, T', V),
                              out_lengths (B,)`` with :math:`T' = \lceil T / k \rceil`
:class:`Seq2SeqEncoderExport` ``src (B, S), src_len (B,) -> values (B, S, Dm), keys (B, S, K),
                              mask (B, S) bool, h (L, B, H), c (L, B, H)``
:class:`Seq2SeqStepExport`    ``prev_tokens (B,), feed (B, E), h, c, values, keys, mask ->
                              log_probs (B, V), feed, h, c, attention (B, S)``
:class:`ForecasterExport`     ``x (B, L, F)`` [, ``future (B, H, K)``] ``-> params (B, H, C,
                              P)`` (L, H fixed: the run's lookback and horizon)
============================  ==========================================================

The seq2seq model is two graphs, so that greedy and beam search run outside torch, one decoder
step per call (:mod:`lstmkit.infer.onnx_predict` holds a numpy driver).

Encoders built with ``--cell rnn`` or ``--cell gru`` are torch modules; they export with
torch's own operators where no lengths are needed (a unidirectional encoder: its outputs at
valid steps do not depend on the padding after them, and every read-out here masks the rest);
a bidirectional one needs packing, which has no export form: :class:`ExportError` names
``--cell``.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lstmkit.export import ExportError, lstm_forward
from lstmkit.models.classifier import TextClassifier
from lstmkit.models.encoder import SequenceModel
from lstmkit.models.forecaster import Forecaster
from lstmkit.models.lm import LanguageModel
from lstmkit.models.seq2seq import Seq2Seq
from lstmkit.models.speech import CtcModel, WordClassifier
from lstmkit.nn import LSTM, LSTMCell
from lstmkit.nn.quantized import QuantizedLSTM
from lstmkit.reference.lstm import lstm_recurrent_step
from lstmkit.reference.recurrence import RecurrenceInputs


class Port(NamedTuple):
    """One graph input or output: its name, dtype and shape (a dimension is an int, or the
    name of a symbolic one: ``B`` batch, ``T`` time, ``S`` source length...)."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]

    def describe(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


def _example(ports: tuple[Port, ...], sizes: dict[str, int]) -> tuple[Tensor, ...]:
    """Example inputs for ``ports`` with the symbolic dimensions at ``sizes``: small random
    floats, token ids 4.. (past the specials), booleans true, and any port named like a length
    descending from the full length (padded batches, so the export sees the general case)."""
    gen = torch.Generator().manual_seed(0)
    out = []
    for p in ports:
        shape = tuple(sizes[d] if isinstance(d, str) else d for d in p.shape)
        if "len" in p.name:
            full = sizes["S" if p.name.startswith("src") else "T"]
            out.append(torch.tensor([max(1, full - k) for k in range(shape[0])]))
        elif p.dtype == "int64":
            out.append(torch.randint(4, 6, shape, generator=gen))
        elif p.dtype == "bool":
            out.append(torch.ones(shape, dtype=torch.bool))
        else:
            out.append(torch.randn(shape, generator=gen))
    return tuple(out)


EXAMPLE_SIZES = {"B": 3, "T": 7, "S": 6}
"""The sizes of the example inputs a graph is exported at: none of them 0 or 1, which
torch.export would take for constants."""


class ExportForm(nn.Module):
    """An export wrapper: its graph's ``inputs`` and ``outputs`` (:class:`Port`) and the
    example inputs it is exported with."""

    inputs: tuple[Port, ...] = ()
    outputs: tuple[Port, ...] = ()

    def example(self, **sizes: int) -> tuple[Tensor, ...]:
        """Example inputs at ``sizes`` over :data:`EXAMPLE_SIZES`."""
        return _example(self.inputs, {**EXAMPLE_SIZES, **sizes})

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.outputs)

    def dynamic_dims(self) -> set[str]:
        return {d for p in self.inputs for d in p.shape if isinstance(d, str)}


def _state_ports(encoder: nn.Module, suffix: str = "") -> tuple[Port, ...]:
    """``h (L*D, B, P)`` and, for an LSTM, ``c (L*D, B, H)``."""
    D = 2 if encoder.bidirectional else 1
    L, H = encoder.num_layers * D, encoder.hidden_size
    P = getattr(encoder, "proj_size", 0) or H
    h = Port("h" + suffix, "float32", (L, "B", P))
    lstm = isinstance(encoder, (LSTM, QuantizedLSTM))
    return (h, Port("c" + suffix, "float32", (L, "B", H))) if lstm else (h,)


def encoder_forward(
    encoder: nn.Module, x: Tensor, lengths: Tensor | None = None, state=None
) -> tuple[Tensor, object]:
    """``encoder(x, state)`` of a batch-first recurrent layer, in export form: an
    :class:`lstmkit.LSTM` through :func:`lstm_forward` (``lengths``: packing semantics), torch's
    RNN/GRU as they are where that is the same (see the module docstring). A quantized LSTM
    (``lstmkit quantize``) goes through :func:`lstm_forward` too, its weights kept quantized."""
    if isinstance(encoder, (LSTM, QuantizedLSTM)):
        return lstm_forward(encoder, x, state, lengths)
    if lengths is not None:
        check_packable(encoder)
    return encoder(x, state)


def check_packable(encoder: nn.Module) -> None:
    """An :class:`ExportError` naming ``--cell`` for a bidirectional torch RNN/GRU, whose
    reverse direction must start at each sequence's own end (packing, which no graph holds)."""
    if not isinstance(encoder, (LSTM, QuantizedLSTM)) and encoder.bidirectional:
        cell = "gru" if isinstance(encoder, nn.GRU) else "rnn"
        raise ExportError(
            f"--cell {cell} with --bidirectional: its reverse direction needs packed sequences, "
            "which have no export form; export an lstm (--cell lstm) model, or a "
            "unidirectional one"
        )


def _valid_mask(lengths: Tensor, T: int | torch.SymInt) -> Tensor:
    """``(B, T)``: True at the steps before each length."""
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]


def _last_step(y: Tensor, lengths: Tensor) -> Tensor:
    """``y[b, lengths[b] - 1]`` of a ``(B, T, F)`` tensor, as a gather (no Python indices)."""
    last = (lengths - 1).clamp(min=0)
    index = last.view(-1, 1, 1).expand(-1, 1, y.shape[-1])
    return y.gather(1, index).squeeze(1)


class SequenceModelExport(ExportForm):
    """:class:`~lstmkit.models.encoder.SequenceModel` (the long-time-lag tasks):
    ``x (B, T, I), lengths (B,) -> (B, out)`` at the last valid step, or ``(B, T, out)`` for a
    per-step model."""

    def __init__(self, model: SequenceModel):
        super().__init__()
        self.model = model
        size = model.encoder.input_size
        self.inputs = (Port("x", "float32", ("B", "T", size)), Port("lengths", "int64", ("B",)))
        out = (
            ("B", "T", model.head.out_features)
            if model.per_step
            else ("B", model.head.out_features)
        )
        self.outputs = (Port("outputs", "float32", out),)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        m = self.model
        y, _ = encoder_forward(m.encoder, x, lengths)
        if not m.per_step:
            y = _last_step(y, lengths)
        return m.head(y)


class ClassifierExport(ExportForm):
    r""":class:`~lstmkit.models.classifier.TextClassifier` (sentiment): ``tokens (B, T),
    lengths (B,) -> logits (B, C)``, every pooling as the model pools (``last``: the forward
    state at :math:`T_b` with the backward state at step 1; ``mean``/``max``/``attention``
    over the valid steps)."""

    def __init__(self, model: TextClassifier):
        super().__init__()
        self.model = model
        self.inputs = (Port("tokens", "int64", ("B", "T")), Port("lengths", "int64", ("B",)))
        self.outputs = (Port("logits", "float32", ("B", model.head.out_features)),)

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        m = self.model
        y, _ = encoder_forward(m.encoder, m.embedding(tokens), lengths)
        mask = _valid_mask(lengths, tokens.shape[1])
        if m.pooling == "last":
            pooled = _last_step(y, lengths)
            if m.encoder.bidirectional:
                half = y.shape[-1] // 2
                pooled = torch.cat([pooled[:, :half], y[:, 0, half:]], dim=-1)
        elif m.pooling == "mean":
            w = mask.unsqueeze(-1).to(y.dtype)
            pooled = (y * w).sum(1) / w.sum(1).clamp(min=1)
        elif m.pooling == "max":
            pooled = y.masked_fill(~mask.unsqueeze(-1), float("-inf")).max(1).values
        else:
            scores = m.attn(y).squeeze(-1).masked_fill(~mask, float("-inf"))
            pooled = (torch.softmax(scores, dim=1).unsqueeze(-1) * y).sum(1)
        return m.head(pooled)


class LanguageModelExport(ExportForm):
    """:class:`~lstmkit.models.lm.LanguageModel` with its state in and out: ``tokens (B, T),
    h (L, B, P), c (L, B, H) -> logits (B, T, V), h, c`` (``h`` only, for an rnn/gru encoder).
    With an adaptive softmax the scores are the full log-probabilities (``log_prob`` over the
    whole vocabulary: the same distribution as logits); ``scores`` says which."""

    def __init__(self, model: LanguageModel):
        super().__init__()
        self.model = model
        self.lstm = isinstance(model.encoder, (LSTM, QuantizedLSTM))
        self.scores = "log_probs" if model.adaptive is not None else "logits"
        V = model.embedding.num_embeddings
        self.inputs = (Port("tokens", "int64", ("B", "T")), *_state_ports(model.encoder))
        self.outputs = (
            Port("logits", "float32", ("B", "T", V)),
            *_state_ports(model.encoder, "_out"),
        )

    def forward(self, tokens: Tensor, h: Tensor, c: Tensor | None = None):
        m = self.model
        state = (h, c) if self.lstm else h
        y, state = encoder_forward(m.encoder, m.embedding(tokens), None, state)
        if m.adaptive is None:
            scores = m.decoder(y)
        else:
            scores = m.adaptive.log_prob(y.flatten(0, 1)).unflatten(0, (y.shape[0], y.shape[1]))
        if self.lstm:
            return scores, state[0], state[1]
        return scores, state


def stack_frames(x: Tensor, lengths: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """:func:`lstmkit.models.speech.stack_frames` without a branch on the (symbolic) number
    of frames: zero past each length, pad by ``k - 1`` frames and keep ``ceil(T / k) k`` of
    them, so one graph serves every ``T``."""
    if k == 1:
        return x, lengths
    B, T, Fdim = x.shape
    x = x * _valid_mask(lengths, T)[..., None].to(x.dtype)
    groups = (T + k - 1) // k
    x = F.pad(x, (0, 0, 0, k - 1))[:, : groups * k]
    return x.reshape(B, groups, k * Fdim), (lengths + k - 1) // k


def _feature_ports(encoder) -> tuple[Port, ...]:
    n_mels = encoder.encoder.input_size // encoder.subsample
    return (Port("features", "float32", ("B", "T", n_mels)), Port("lengths", "int64", ("B",)))


def _speech_encode(encoder, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    x, lengths = stack_frames(x, lengths, encoder.subsample)
    y, _ = encoder_forward(encoder.encoder, x, lengths)
    return y, lengths


class WordsExport(ExportForm):
    """:class:`~lstmkit.models.speech.WordClassifier` (spoken-words): ``features (B, T, F),
    lengths (B,) -> logits (B, C)``, pooled over the valid frames as the model pools."""

    def __init__(self, model: WordClassifier):
        super().__init__()
        self.model = model
        self.inputs = _feature_ports(model.encoder)
        self.outputs = (Port("logits", "float32", ("B", model.head.out_features)),)

    def forward(self, features: Tensor, lengths: Tensor) -> Tensor:
        m = self.model
        y, lengths = _speech_encode(m.encoder, features, lengths)
        mask = _valid_mask(lengths, y.shape[1])[..., None]
        if m.pooling == "mean":
            pooled = (y * mask.to(y.dtype)).sum(1) / lengths[:, None].clamp(min=1).to(y.dtype)
        elif m.pooling == "max":
            pooled = y.masked_fill(~mask, float("-inf")).amax(1)
        else:
            pooled = _last_step(y, lengths)
        return m.head(pooled)


class CtcExport(ExportForm):
    """:class:`~lstmkit.models.speech.CtcModel` (asr-ctc): ``features (B, T, F), lengths (B,)
    -> log_probs (B, T', V)`` (blank = 0) and ``out_lengths (B,)``. Frames past a length are
    not meaningful (a unidirectional eager model computes them from padding; here they are the
    read-out of zeros); decoders read the first ``out_lengths`` only."""

    def __init__(self, model: CtcModel):
        super().__init__()
        self.model = model
        self.inputs = _feature_ports(model.encoder)
        self.outputs = (
            Port("log_probs", "float32", ("B", "T_out", model.head.out_features)),
            Port("out_lengths", "int64", ("B",)),
        )

    def forward(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        y, lengths = _speech_encode(self.model.encoder, features, lengths)
        return self.model.head(y).log_softmax(-1), lengths


def cell_step(cell: LSTMCell, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """One eval step of an :class:`lstmkit.LSTMCell` in plain tensor operations: the reference
    step (:func:`lstmkit.reference.lstm.lstm_recurrent_step`, every variant) with zoneout in
    its eval form (the expectation: keep ``rate`` of the previous state) and no dropout."""
    bias = cell.bias
    step = RecurrenceInputs(
        xg=cell._input_projection(x, ""),
        h0=h,
        c0=c,
        weight_hh=cell.weight_hh,
        bias_hh=cell.bias_hh if bias else None,
        weight_ci=getattr(cell, "weight_ci", None),
        weight_cf=getattr(cell, "weight_cf", None),
        weight_co=getattr(cell, "weight_co", None),
        ln_weight_hh=getattr(cell, "ln_weight_hh", None),
        ln_weight_c=getattr(cell, "ln_weight_c", None),
        ln_bias_c=getattr(cell, "ln_bias_c", None),
        zoneout_h=cell.zoneout_h or None,
        zoneout_c=cell.zoneout_c or None,
    )
    out = lstm_recurrent_step(step, cell.variant_options.cell_options)
    return out.h, out.c


class Seq2SeqEncoderExport(ExportForm):
    """The encoder half of :class:`~lstmkit.models.seq2seq.Seq2Seq`: ``src (B, S), src_len
    (B,)`` -> the attention memory (``values``, precomputed ``keys``, ``mask``) and the
    decoder's initial state ``h, c`` as ``(L, B, H)`` (:meth:`Seq2Seq.encode`)."""

    def __init__(self, model: Seq2Seq):
        super().__init__()
        self.model = model
        self.inputs = (Port("src", "int64", ("B", "S")), Port("src_len", "int64", ("B",)))
        self.outputs = _memory_ports(model) + _decoder_state(model)

    def forward(self, src: Tensor, src_len: Tensor):
        m = self.model
        B, S = src.shape
        values, (h_n, _) = lstm_forward(m.encoder, m.src_embed(src), None, src_len)
        enc = m.encoder
        D = 2 if enc.bidirectional else 1
        last = h_n.view(enc.num_layers, D, B, -1)[-1].transpose(0, 1).reshape(B, -1)
        H, L = m.cfg.decoder.hidden_size, len(m.cells)
        h0 = torch.tanh(m.bridge(last)).view(B, L, H).transpose(0, 1)
        return values, m.attention.keys(values), _valid_mask(src_len, S), h0, torch.zeros_like(h0)


def _memory_ports(model: Seq2Seq) -> tuple[Port, ...]:
    enc = model.encoder
    Dm = (enc.proj_size or enc.hidden_size) * (2 if enc.bidirectional else 1)
    K = model.attention.keys(torch.zeros(1, Dm, device="meta")).shape[-1]
    return (
        Port("values", "float32", ("B", "S", Dm)),
        Port("keys", "float32", ("B", "S", K)),
        Port("mask", "bool", ("B", "S")),
    )


def _decoder_state(model: Seq2Seq, suffix: str = "") -> tuple[Port, ...]:
    L, H = len(model.cells), model.cfg.decoder.hidden_size
    return (
        Port("h" + suffix, "float32", (L, "B", H)),
        Port("c" + suffix, "float32", (L, "B", H)),
    )


class Seq2SeqStepExport(ExportForm):
    """One decoder step of :class:`~lstmkit.models.seq2seq.Seq2Seq` (:meth:`Seq2Seq.step`,
    then the output layer and a log-softmax): ``prev_tokens (B,)``, the attentional vector
    ``feed (B, E)`` (zeros at the first step), the state ``h, c (L, B, H)`` and the memory ->
    ``log_probs (B, V)``, the new ``feed``, ``h``, ``c`` and the ``attention`` weights
    ``(B, S)``."""

    def __init__(self, model: Seq2Seq):
        super().__init__()
        self.model = model
        E, V = model.cfg.embed_size, model.out_bias.shape[0]
        feed = Port("feed", "float32", ("B", E))
        self.inputs = (
            Port("prev_tokens", "int64", ("B",)),
            feed,
            *_decoder_state(model),
            *_memory_ports(model),
        )
        self.outputs = (
            Port("log_probs", "float32", ("B", V)),
            feed._replace(name="feed_out"),
            *_decoder_state(model, "_out"),
            Port("attention", "float32", ("B", "S")),
        )

    def forward(self, prev_tokens, feed, h, c, values, keys, mask):
        m = self.model
        x = m.tgt_embed(prev_tokens)
        if m.cfg.input_feed:
            x = torch.cat([x, feed], dim=-1)
        hs, cs = [], []
        for layer, cell in enumerate(m.cells):
            h_l, c_l = cell_step(cell, x, h[layer], c[layer])
            hs.append(h_l)
            cs.append(c_l)
            x = h_l
        att = m.attention
        if att.kind == "bahdanau":
            scores = att.v(torch.tanh(keys + att.w_q(x).unsqueeze(1))).squeeze(2)
        else:
            scores = torch.bmm(keys, x.unsqueeze(2)).squeeze(2)
        weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
        context = torch.bmm(weights.unsqueeze(1), values).squeeze(1)
        attentional = torch.tanh(m.combine(torch.cat([context, x], dim=-1)))
        log_probs = torch.log_softmax(m.logits(attentional), dim=-1)
        return log_probs, attentional, torch.stack(hs), torch.stack(cs), weights


class _RecurrentInExport(nn.Module):
    """A batch-first recurrent layer called as ``layer(x, state)`` in its export form
    (:func:`encoder_forward`): what a copy of a model holds in place of each LSTM, so that the
    model's own ``forward`` traces to ONNX's LSTM node (or a Scan) instead of lstmkit's custom
    op, which ONNX cannot express."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x: Tensor, state=None):
        return encoder_forward(self.layer, x, None, state)


def with_lstms_in_export_form(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose every :class:`lstmkit.LSTM` / :class:`QuantizedLSTM` is
    wrapped by :class:`_RecurrentInExport` (``model`` itself is left as it is; torch's GRU and
    RNN baselines stay, they export with torch's operators)."""
    out = copy.deepcopy(model)
    found = [name for name, m in out.named_modules() if isinstance(m, (LSTM, QuantizedLSTM))]
    for name in found:
        parent_name, _, attr = name.rpartition(".")
        parent = out.get_submodule(parent_name) if parent_name else out
        setattr(parent, attr, _RecurrentInExport(getattr(parent, attr)))
    return out


class ForecasterExport(ExportForm):
    r""":class:`~lstmkit.models.forecaster.Forecaster` (forecast): ``x (B, L, F)``, the
    lookback window as the task feeds it (the scaled values of the run's input columns, then,
    with ``--calendar``, the window's calendar features), and with calendar features
    ``future (B, H, K)``, those of the horizon's rows -> ``params (B, H, C, P)``, the
    constrained distribution parameters in the scaled units (RevIN's inverse applied), as
    ``Forecaster.forward`` returns them at evaluation.

    :math:`L` (the lookback) and :math:`H` (the horizon) are fixed, the batch is free. Every
    model form exports: the direct LSTM, the encoder-decoder (its loop over the horizon
    unrolled, the state passed from step to step, each step fed its own point forecast),
    channel independence (the batch is :math:`B C` inside), RevIN and the baselines (plain
    tensor operations)."""

    def __init__(self, model: Forecaster, lookback: int, horizon: int, n_future: int):
        super().__init__()
        self.model = with_lstms_in_export_form(model)
        C, P = model.n_out, model.cfg.n_params
        self.n_future = n_future
        n_in = model.n_out + model.n_past + n_future
        x = Port("x", "float32", ("B", lookback, n_in))
        future = Port("future", "float32", ("B", horizon, n_future))
        self.inputs = (x, future) if n_future else (x,)
        self.outputs = (Port("params", "float32", ("B", horizon, C, P)),)

    def forward(self, x: Tensor, future: Tensor | None = None) -> Tensor:
        return self.model(x, future)


def export_forms(
    model: nn.Module,
    *,
    lookback: int | None = None,
    horizon: int | None = None,
    n_future: int = 0,
) -> dict[str, ExportForm]:
    """The export wrappers of a task model, by graph name: ``{"model": ...}``, or for a
    :class:`Seq2Seq` ``{"encoder": ..., "decoder": ...}``. A model of another kind is an
    :class:`ExportError`. A :class:`Forecaster` needs the window the task holds and the
    model does not: ``lookback``, ``horizon`` and the number of known-future covariates
    ``n_future``."""
    if isinstance(model, Forecaster):
        if lookback is None or horizon is None:
            raise ExportError("export: a Forecaster's export form needs its lookback and horizon")
        return {"model": ForecasterExport(model, lookback, horizon, n_future)}
    if isinstance(model, Seq2Seq):
        return {"encoder": Seq2SeqEncoderExport(model), "decoder": Seq2SeqStepExport(model)}
    for cls, wrapper in (
        (TextClassifier, ClassifierExport),
        (LanguageModel, LanguageModelExport),
        (WordClassifier, WordsExport),
        (CtcModel, CtcExport),
        (SequenceModel, SequenceModelExport),
    ):
        if isinstance(model, cls):
            if cls is not LanguageModel:  # the others read padded batches: lengths
                encoder = model.encoder
                check_packable(getattr(encoder, "encoder", encoder))  # SpeechEncoder's own
            return {"model": wrapper(model)}
    raise ExportError(f"export: no export form for a {type(model).__name__} model")
