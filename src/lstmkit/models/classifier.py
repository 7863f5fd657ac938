"""The text classifier: token embedding, a recurrent encoder, pooling over time and a linear
classifier, with its config (the encoder's options nested under ``encoder``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from lstmkit.data.tokenize import PAD, UNK
from lstmkit.models.encoder import RecurrentConfig, build_encoder, encoder_output_size
from lstmkit.utils.errors import UserError
from lstmkit.utils.meta import help_meta as _help

POOLING = ("last", "mean", "max", "attention")


SENTIMENT_ENCODER = RecurrentConfig(hidden_size=150, bidirectional=True)
"""The classifier's default encoder: one bidirectional layer of 150 units per direction."""


@dataclass(frozen=True)
class SentimentModelConfig:
    """Embedding, recurrent encoder, pooling and classifier."""

    encoder: RecurrentConfig = field(
        default_factory=lambda: SENTIMENT_ENCODER, metadata=_help("the recurrent encoder")
    )
    embedding_dim: int = field(default=300, metadata=_help("token embedding size"))
    pooling: str = field(default="attention", metadata=_help("over time", choices=POOLING))
    embedding_dropout: float = field(default=0.5, metadata=_help("dropout on the embedded tokens"))
    word_dropout: float = field(
        default=0.1,
        metadata=_help("in training, replace each token by <unk> with this probability"),
    )
    classifier_dropout: float = field(default=0.5, metadata=_help("dropout before the classifier"))

    def __post_init__(self) -> None:
        if self.embedding_dim < 1:
            raise UserError(f"--embedding-dim must be >= 1, got {self.embedding_dim}")
        if self.pooling not in POOLING:
            raise UserError(f"--pooling must be one of {', '.join(POOLING)}, got {self.pooling!r}")
        if not 0 <= self.word_dropout < 1:
            raise UserError(f"--word-dropout must be in [0, 1), got {self.word_dropout}")
        for name in ("embedding_dropout", "classifier_dropout"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise UserError(f"--{name.replace('_', '-')} must be in [0, 1], got {value}")


class TextClassifier(nn.Module):
    """Embedding, recurrent encoder, pooling over time and a linear classifier."""

    def __init__(self, cfg, vocab_size: int, num_classes: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, cfg.embedding_dim, padding_idx=PAD)
        self.embedding_dropout = nn.Dropout(cfg.embedding_dropout)
        self.word_dropout = cfg.word_dropout
        self.encoder = build_encoder(cfg.encoder, cfg.embedding_dim)
        size = encoder_output_size(self.encoder)
        self.pooling = cfg.pooling
        if cfg.pooling == "attention":
            self.attn = nn.Sequential(nn.Linear(size, size), nn.Tanh(), nn.Linear(size, 1))
        self.dropout = nn.Dropout(cfg.classifier_dropout)
        self.head = nn.Linear(size, num_classes)
        self.last_attention: Tensor | None = None

    def encode(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """Encoder outputs ``(B, T, D*H)``; zero at padded steps."""
        if self.training and self.word_dropout:
            drop = torch.rand(tokens.shape, device=tokens.device) < self.word_dropout
            tokens = tokens.masked_fill(drop & (tokens != PAD), UNK)
        x = self.embedding_dropout(self.embedding(tokens))
        if self.encoder.bidirectional:
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            y, _ = self.encoder(packed)
            y, _ = pad_packed_sequence(y, batch_first=True, total_length=tokens.shape[1])
            return y
        y, _ = self.encoder(x)
        return y

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        y = self.encode(tokens, lengths)
        mask = (
            torch.arange(tokens.shape[1], device=y.device)[None, :] < lengths.to(y.device)[:, None]
        )
        if self.pooling == "last":
            rows = torch.arange(y.shape[0], device=y.device)
            last = y[rows, (lengths.to(y.device) - 1).clamp(min=0)]
            if self.encoder.bidirectional:
                half = y.shape[-1] // 2
                last = torch.cat([last[:, :half], y[:, 0, half:]], dim=-1)
            pooled = last
        elif self.pooling == "mean":
            m = mask.unsqueeze(-1).to(y.dtype)
            pooled = (y * m).sum(1) / m.sum(1).clamp(min=1)
        elif self.pooling == "max":
            pooled = y.masked_fill(~mask.unsqueeze(-1), float("-inf")).max(1).values
        else:
            scores = self.attn(y).squeeze(-1).masked_fill(~mask, float("-inf"))
            alpha = torch.softmax(scores, dim=1)
            self.last_attention = alpha.detach()
            pooled = (alpha.unsqueeze(-1) * y).sum(1)
        return self.head(self.dropout(pooled))
