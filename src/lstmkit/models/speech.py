"""Speech models: frame stacking and a recurrent encoder (:class:`SpeechEncoder`), a pooled
word classifier and a CTC model over characters, with their configs (the encoder's options
nested under ``encoder``) and the CTC decoders (greedy and prefix beam search)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from lstmkit.models.encoder import RecurrentConfig, build_encoder, encoder_output_size
from lstmkit.utils.errors import UserError
from lstmkit.utils.meta import help_meta as _help

POOLINGS = ("mean", "max", "last")


SPEECH_ENCODER = RecurrentConfig(num_layers=2, bidirectional=True)
"""The speech models' default encoder: two bidirectional layers."""


@dataclass(frozen=True)
class SpeechModelConfig:
    """The recurrent encoder (every lstmkit.LSTM option) and the frame subsampling."""

    encoder: RecurrentConfig = field(
        default_factory=lambda: SPEECH_ENCODER, metadata=_help("the recurrent encoder")
    )
    subsample: int = field(
        default=3, metadata=_help("stack this many consecutive frames into one (frame rate / k)")
    )

    def __post_init__(self) -> None:
        if self.subsample < 1:
            raise UserError(f"--subsample must be >= 1, got {self.subsample}")


@dataclass(frozen=True)
class WordsModelConfig(SpeechModelConfig):
    pooling: str = field(
        default="mean",
        metadata=_help("how frames become one vector: mean, max or last", choices=POOLINGS),
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pooling not in POOLINGS:
            raise UserError(f"--pooling must be one of {', '.join(POOLINGS)}")


# ---------------------------------------------------------------------------------------------
# models


def stack_frames(x: Tensor, lengths: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """``(B, T, F)`` frames as ``(B, ceil(T/k), k F)``: each output frame is k input frames
    side by side; lengths become ``ceil(lengths / k)``. Frames past a sequence's length are
    zeroed first, so that a last, partial group never sees the padding of a longer neighbour.
    """
    if k == 1:
        return x, lengths
    B, T, Fdim = x.shape
    x = x * _valid_mask(lengths.to(x.device), T)[..., None]
    pad = (-T) % k
    if pad:
        x = F.pad(x, (0, 0, 0, pad))
    return x.reshape(B, (T + pad) // k, k * Fdim), (lengths + k - 1) // k


class SpeechEncoder(nn.Module):
    """Frame stacking then the recurrent encoder; ``forward(x, lengths) -> (y, lengths)``."""

    def __init__(self, cfg, n_mels: int):
        super().__init__()
        self.subsample = cfg.subsample
        self.encoder = build_encoder(cfg.encoder, n_mels * cfg.subsample)
        self.output_size = encoder_output_size(self.encoder)

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        x, lengths = stack_frames(x, lengths, self.subsample)
        if self.encoder.bidirectional and x.shape[0] > 1 and bool((lengths < x.shape[1]).any()):
            # the reverse direction must start at each sequence's own last frame
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            y, _ = self.encoder(packed)
            y, _ = pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])
        else:
            y, _ = self.encoder(x)
        return y, lengths


def _valid_mask(lengths: Tensor, T: int) -> Tensor:
    return torch.arange(T, device=lengths.device)[None] < lengths[:, None]


class WordClassifier(nn.Module):
    """Encoder, pooling over the valid frames, linear layer to the classes."""

    def __init__(self, cfg, n_mels: int, n_classes: int):
        super().__init__()
        self.encoder = SpeechEncoder(cfg, n_mels)
        self.pooling = cfg.pooling
        self.head = nn.Linear(self.encoder.output_size, n_classes)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        y, lengths = self.encoder(x, lengths)
        mask = _valid_mask(lengths.to(y.device), y.shape[1])[..., None]
        if self.pooling == "mean":
            pooled = (y * mask).sum(1) / lengths.to(y.device)[:, None].clamp(min=1)
        elif self.pooling == "max":
            pooled = y.masked_fill(~mask, float("-inf")).amax(1)
        else:
            last = (lengths.to(y.device) - 1).clamp(min=0)
            pooled = y[torch.arange(y.shape[0], device=y.device), last]
        return self.head(pooled)


class CtcModel(nn.Module):
    """Encoder and a linear layer to per-frame log-probabilities over blank + characters."""

    def __init__(self, cfg, n_mels: int, n_symbols: int):
        super().__init__()
        self.encoder = SpeechEncoder(cfg, n_mels)
        self.head = nn.Linear(self.encoder.output_size, n_symbols)

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, T', V)`` log-probabilities (blank = 0) and the ``T'`` of each sequence."""
        y, lengths = self.encoder(x, lengths)
        return self.head(y).log_softmax(-1), lengths


# ---------------------------------------------------------------------------------------------
# CTC decoding


def ctc_greedy(log_probs: Tensor | np.ndarray, length: int | None = None) -> list[int]:
    """Best path decoding: the most likely symbol per frame, repeats merged, blanks (0) removed."""
    lp = torch.as_tensor(log_probs)
    best = lp[: length if length is not None else lp.shape[0]].argmax(-1).tolist()
    out, prev = [], 0
    for s in best:
        if s != prev and s != 0:
            out.append(s)
        prev = s
    return out


def ctc_beam_search(
    log_probs: Tensor | np.ndarray, beam_size: int = 8, length: int | None = None
) -> list[int]:
    """CTC prefix beam search (Hannun et al. 2014, without a language model).

    Each prefix keeps two log-probabilities, of the frame paths that map to it and end in a
    blank (``pb``) or in its last symbol (``pnb``); a symbol equal to the prefix's last one
    extends the prefix only from ``pb`` (otherwise the two merge). After every frame the
    ``beam_size`` most likely prefixes survive; only the ``beam_size`` likeliest symbols of a
    frame are tried. Returns the most likely prefix (blank = 0 is never emitted).
    """
    lp = torch.as_tensor(log_probs).double()
    lp = lp[: length if length is not None else lp.shape[0]].numpy()
    if beam_size < 1:
        raise UserError(f"--beam-size must be >= 1, got {beam_size}")
    neg = -math.inf
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, neg)}
    for row in lp:
        candidates = [int(c) for c in np.argsort(-row)[:beam_size] if c != 0]
        nxt: dict[tuple[int, ...], list[float]] = {}

        def add(prefix, blank=neg, nonblank=neg, _n=nxt):
            cur = _n.setdefault(prefix, [neg, neg])
            cur[0] = np.logaddexp(cur[0], blank)
            cur[1] = np.logaddexp(cur[1], nonblank)

        for prefix, (pb, pnb) in beams.items():
            total = np.logaddexp(pb, pnb)
            add(prefix, blank=total + row[0])
            for c in candidates:
                p = row[c]
                if prefix and prefix[-1] == c:
                    add(prefix + (c,), nonblank=pb + p)
                    add(prefix, nonblank=pnb + p)
                else:
                    add(prefix + (c,), nonblank=total + p)
        ranked = sorted(nxt.items(), key=lambda kv: -np.logaddexp(*kv[1]))[:beam_size]
        beams = {k: (v[0], v[1]) for k, v in ranked}
    return list(max(beams.items(), key=lambda kv: np.logaddexp(*kv[1]))[0])
