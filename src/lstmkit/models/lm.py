"""The language model: an embedding, a recurrent encoder and a read-out over the vocabulary (a
linear layer, optionally tied to the embedding, or an adaptive softmax), with the AWD-LSTM
regularisers it uses and its config (the encoder's options nested under ``encoder``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lstmkit.models.encoder import RecurrentConfig, build_encoder, encoder_output_size
from lstmkit.utils.errors import UserError
from lstmkit.utils.meta import help_meta as _help

# ----------------------------------------------------------------------------- regularisers


def embedding_dropout(weight: Tensor, p: float, training: bool) -> Tensor:
    r"""Embedding dropout (Gal & Ghahramani 2016; AWD-LSTM's ``embedded_dropout``): whole rows
    of the embedding matrix :math:`E \in \mathbb{R}^{V \times d}` are dropped, so a token type
    is dropped everywhere it occurs in the batch:

    .. math:: E' = \frac{m}{1 - p} \odot E, \qquad m_v \sim \text{Bernoulli}(1 - p)
        \text{ per row } v.
    """
    if not training or p == 0:
        return weight
    mask = weight.new_empty(weight.shape[0], 1).bernoulli_(1 - p) / (1 - p)
    return weight * mask


def variational_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    r"""Variational ("locked") dropout on a ``(B, T, F)`` sequence (Gal & Ghahramani 2016): one
    mask per sequence, the same at every time step:

    .. math:: y_{b,t} = \frac{m_b}{1 - p} \odot x_{b,t}, \qquad m_b \sim
        \text{Bernoulli}(1 - p)^F.
    """
    if not training or p == 0:
        return x
    mask = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(1 - p) / (1 - p)
    return x * mask


LM_ENCODER = RecurrentConfig(hidden_size=512, num_layers=2)
"""The language model's default encoder: two layers of 512 units."""


@dataclass(frozen=True)
class LMModelConfig:
    """The language model: embedding, recurrent encoder, read-out."""

    encoder: RecurrentConfig = field(
        default_factory=lambda: LM_ENCODER, metadata=_help("the recurrent encoder")
    )
    embed_size: int = field(
        default=0, metadata=_help("embedding size; 0: the encoder's output size (needed to tie)")
    )
    tie_weights: bool = field(
        default=False,
        metadata=_help("share one matrix between the embedding and the read-out (Press & Wolf)"),
    )
    dropout_embed: float = field(
        default=0.0, metadata=_help("embedding dropout: drop whole token types (rows)")
    )
    dropout_input: float = field(
        default=0.0, metadata=_help("variational dropout on the LSTM input, one mask per stream")
    )
    dropout_output: float = field(
        default=0.0, metadata=_help("variational dropout on the LSTM output, one mask per stream")
    )
    adaptive_softmax: str = field(
        default="",
        metadata=_help(
            "adaptive softmax cutoffs, e.g. 2000,6000 (vocabulary ids, most frequent first): "
            "a cheaper read-out for large vocabularies; '' for the full softmax"
        ),
    )

    def __post_init__(self) -> None:
        for name in ("dropout_embed", "dropout_input", "dropout_output"):
            v = getattr(self, name)
            if not 0 <= v < 1:
                raise UserError(f"--{name.replace('_', '-')} must be in [0, 1), got {v}")
        if self.encoder.bidirectional:
            raise UserError(
                "--bidirectional: a language model predicts from the past only; a reverse "
                "direction would read the next token"
            )
        if self.embed_size < 0:
            raise UserError(f"--embed-size must be >= 0, got {self.embed_size}")
        if self.tie_weights and self.embed != self.output_size:
            raise UserError(
                f"--tie-weights needs --embed-size equal to the encoder output size "
                f"{self.output_size} (--proj-size or --hidden-size), got {self.embed}"
            )
        if self.adaptive_softmax:
            if self.tie_weights:
                raise UserError(
                    "--tie-weights shares the embedding with a linear read-out; the adaptive "
                    "softmax has none (leave out one of --tie-weights, --adaptive-softmax)"
                )
            parse_cutoffs(self.adaptive_softmax)  # the form; the vocabulary is the task's

    @property
    def output_size(self) -> int:
        """Size of the encoder's output (its projection, if any)."""
        return self.encoder.proj_size or self.encoder.hidden_size

    @property
    def embed(self) -> int:
        """The embedding size: ``embed_size``, or the encoder's output size when 0."""
        return self.embed_size or self.output_size


# ----------------------------------------------------------------------------- model


def parse_cutoffs(spec: str, vocab_size: int | None = None) -> list[int]:
    """``2000,6000`` -> ``[2000, 6000]``, checked increasing and inside ``(0, vocab_size)``
    (above 0 only, without a ``vocab_size``)."""
    try:
        cutoffs = [int(v) for v in spec.split(",") if v.strip()]
    except ValueError:
        raise UserError(
            f"--adaptive-softmax {spec!r}: give increasing integers, e.g. 2000,6000"
        ) from None
    if not cutoffs or cutoffs != sorted(set(cutoffs)) or not 0 < cutoffs[0]:
        raise UserError(f"--adaptive-softmax {spec!r}: give increasing integers, e.g. 2000,6000")
    if vocab_size is not None and cutoffs[-1] >= vocab_size:
        raise UserError(
            f"--adaptive-softmax {spec!r}: every cutoff must be below the vocabulary size "
            f"{vocab_size}"
        )
    return cutoffs


class LanguageModel(nn.Module):
    """Embedding -> recurrent encoder -> read-out over the vocabulary (a linear layer and a
    softmax, or an adaptive softmax).

    ``forward(x, state=None)`` takes token ids ``(B, T)`` and returns scores ``(B, T, V)``
    (logits; log-probabilities with the adaptive softmax: the same distribution) and the
    encoder's final state (for the next chunk of the same streams). ``forward(x, state,
    targets)`` returns instead the negative log-likelihood ``(B, T)`` of ``targets`` (0 where a
    target is -100), which the adaptive softmax computes without the full ``(B, T, V)`` scores.
    """

    def __init__(self, cfg: LMModelConfig, vocab_size: int):
        super().__init__()
        embed = cfg.embed
        self.embedding = nn.Embedding(vocab_size, embed)
        self.encoder = build_encoder(cfg.encoder, embed)
        self.dropout_embed = cfg.dropout_embed
        self.dropout_input = cfg.dropout_input
        self.dropout_output = cfg.dropout_output
        self.decoder: nn.Linear | None = None
        self.adaptive: nn.AdaptiveLogSoftmaxWithLoss | None = None
        if cfg.adaptive_softmax:
            cutoffs = parse_cutoffs(cfg.adaptive_softmax, vocab_size)
            self.adaptive = nn.AdaptiveLogSoftmaxWithLoss(
                encoder_output_size(self.encoder), vocab_size, cutoffs, div_value=4.0
            )
            return
        self.decoder = nn.Linear(encoder_output_size(self.encoder), vocab_size)
        with torch.no_grad():
            self.decoder.bias.zero_()
        if cfg.tie_weights:
            # N(0, 1) rows would swamp a tied read-out: small ones, as AWD-LSTM. (Untied, the
            # N(0, 1) default learns much faster at first: 2.1 vs 2.5 nats after 100 steps.)
            with torch.no_grad():
                self.embedding.weight.uniform_(-0.1, 0.1)
            self.decoder.weight = self.embedding.weight

    def forward(
        self, x: Tensor, state: Any = None, targets: Tensor | None = None
    ) -> tuple[Tensor, Any]:
        w = embedding_dropout(self.embedding.weight, self.dropout_embed, self.training)
        e = variational_dropout(F.embedding(x, w), self.dropout_input, self.training)
        y, state = self.encoder(e, state)
        y = variational_dropout(y, self.dropout_output, self.training)
        if targets is None:
            if self.adaptive is None:
                return self.decoder(y), state
            return self.adaptive.log_prob(y.flatten(0, 1)).unflatten(0, y.shape[:2]), state
        if self.adaptive is None:
            nll = F.cross_entropy(
                self.decoder(y).flatten(0, 1), targets.flatten(), reduction="none"
            )
            return nll.view(targets.shape), state
        keep = targets.flatten() != -100
        picked = self.adaptive(y.flatten(0, 1)[keep], targets.flatten()[keep]).output
        nll = picked.new_zeros(targets.numel()).masked_scatter(keep, -picked)
        return nll.view(targets.shape), state


def detach_state(state: Any) -> Any:
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.detach()
    return tuple(s.detach() for s in state)
