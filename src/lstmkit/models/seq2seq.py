r"""An LSTM encoder-decoder with attention, and its greedy and beam-search decoders.

Encoder: subword embeddings into a (bidirectional, multi-layer) :class:`lstmkit.LSTM`, run on
packed sequences so that padding never enters a recurrence. Its outputs :math:`m_1 \dots m_S`
are the attention memory.

Decoder (Luong et al. 2015, "global attention" with input feeding): a stack of
:class:`lstmkit.LSTMCell` s, one step at a time. At target step :math:`t`

.. math::
    \begin{array}{ll}
    x_t = [E y_{t-1};\ \tilde h_{t-1}] & \text{(input feeding; } \tilde h_0 = 0) \\
    h_t = \text{LSTM}(x_t, h_{t-1}) & \text{(top layer's output)} \\
    a_{ts} = \operatorname{softmax}_s\, \text{score}(h_t, m_s) & \text{(padding: } -\infty) \\
    c_t = \textstyle\sum_s a_{ts} m_s \\
    \tilde h_t = \tanh(W_c [c_t; h_t]) \\
    p(y_t \mid y_{<t}, x) = \operatorname{softmax}(E \tilde h_t + b)
    \end{array}

with the scores ``dot`` :math:`h_t^\top m_s`, ``general`` :math:`h_t^\top W_a m_s` (Luong) and
``bahdanau`` (additive, Bahdanau et al. 2015) :math:`v^\top \tanh(W_q h_t + W_k m_s)`. The
additive score is applied to the current state :math:`h_t` inside Luong's architecture (not to
:math:`h_{t-1}` as in Bahdanau's own decoder). :math:`\tilde h_t` has the embedding size, so the
output layer can reuse the target embedding matrix :math:`E` (tied embeddings, Press & Wolf
2017); untied, it is a separate linear layer. The decoder starts from
:math:`h_0^{(l)} = \tanh(W_b^{(l)} [\overrightarrow{h}_S; \overleftarrow{h}_1])` (the encoder's
final states of its top layer), :math:`c_0 = 0`.

The cells are :class:`lstmkit.LSTMCell`, so every variant of :class:`lstmkit.LSTM` but the
projection (layer norm, peepholes, coupled gates, no forget gate, zoneout, variational recurrent
dropout with one mask per sentence) is available in the decoder too.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, make_dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from lstmkit.data.tokenize import BOS, EOS, PAD
from lstmkit.models.encoder import check_lstm_options, lstm_option_fields
from lstmkit.nn import LSTM, LSTMCell, LSTMConfig
from lstmkit.utils.errors import UserError

ATTENTION = ("general", "dot", "bahdanau")
ENC_PREFIX, DEC_PREFIX = "enc_", "dec_"
"""The flags of the two sections: ``--enc-hidden-size``, ``--dec-hidden-size``..."""
_NOT_IN_CELL = {"bidirectional", "proj_size"}

EncoderConfig = make_dataclass(
    "EncoderConfig",
    lstm_option_fields(
        {"hidden_size": 256, "bidirectional": True, "forget_bias": 1.0}, what="encoder: "
    ),
    frozen=True,
    namespace={
        "__doc__": "The encoder's :class:`lstmkit.LSTM` options (``--enc-*``), checked on "
        "construction as the LSTM checks them.",
        "__module__": __name__,
        "__post_init__": lambda self: check_lstm_options(self, ENC_PREFIX),
    },
)

DecoderConfig = make_dataclass(
    "DecoderConfig",
    lstm_option_fields({"hidden_size": 512, "forget_bias": 1.0}, _NOT_IN_CELL, "decoder: "),
    frozen=True,
    namespace={
        "__doc__": "The decoder's :class:`lstmkit.LSTMCell` options (``--dec-*``; no reverse "
        "direction or projection in a cell), checked on construction.",
        "__module__": __name__,
        "__post_init__": lambda self: check_lstm_options(self, DEC_PREFIX, stacked=False),
    },
)


def _h(text: str, **extra: object) -> dict[str, object]:
    return {"help": text, **extra}


@dataclass(frozen=True)
class Seq2SeqConfig:
    """The encoder-decoder: sizes, attention, dropout, and every lstmkit.LSTM option for the
    encoder (``encoder``, flags --enc-*) and the decoder (``decoder``, flags --dec-*)."""

    embed_size: int = field(default=256, metadata=_h("subword embedding size (E)"))
    attention: str = field(
        default="general",
        metadata=_h(
            "attention score: general (Luong h^T W m), dot (Luong h^T m) or bahdanau "
            "(additive v^T tanh(W h + U m))",
            choices=ATTENTION,
        ),
    )
    attention_size: int = field(default=256, metadata=_h("hidden size of bahdanau"))
    input_feed: bool = field(
        default=True, metadata=_h("feed the attentional vector to the next step")
    )
    dropout: float = field(
        default=0.3,
        metadata=_h("dropout on embeddings, encoder outputs and the attentional vector"),
    )
    tie_embeddings: bool = field(
        default=True, metadata=_h("output layer reuses the target embedding matrix")
    )
    encoder: EncoderConfig = field(
        default_factory=EncoderConfig, metadata=_h("the encoder", prefix=ENC_PREFIX)
    )
    decoder: DecoderConfig = field(
        default_factory=DecoderConfig, metadata=_h("the decoder", prefix=DEC_PREFIX)
    )

    def __post_init__(self) -> None:
        if isinstance(self.embed_size, bool) or not isinstance(self.embed_size, int):
            raise UserError(f"--embed-size must be an integer, got {self.embed_size!r}")
        if self.embed_size < 1:
            raise UserError(f"--embed-size must be >= 1, got {self.embed_size}")
        if self.attention not in ATTENTION:
            raise UserError(
                f"--attention must be one of {', '.join(ATTENTION)}, got {self.attention!r}"
            )
        if self.attention == "bahdanau" and self.attention_size < 1:
            raise UserError(f"--attention-size must be >= 1, got {self.attention_size}")
        if not 0 <= self.dropout <= 1:
            raise UserError(f"--dropout must be in [0, 1], got {self.dropout}")
        enc = self.encoder
        memory = (enc.proj_size or enc.hidden_size) * (2 if enc.bidirectional else 1)
        if self.attention == "dot":
            _check_dot(self.decoder.hidden_size, memory)


def _check_dot(query_size: int, memory_size: int) -> None:
    if query_size != memory_size:
        raise UserError(
            f"--attention dot needs the decoder size ({query_size}) to equal the encoder "
            f"output size ({memory_size}: --enc-hidden-size times 2 directions); use "
            "--attention general or change the sizes"
        )


class Memory(NamedTuple):
    """What the decoder attends to: encoder outputs ``values (B, S, Dm)``, their precomputed
    ``keys (B, S, K)`` and the ``mask (B, S)`` of real (not padding) positions."""

    values: Tensor
    keys: Tensor
    mask: Tensor

    def select(self, index: Tensor) -> Memory:
        return Memory(*(t.index_select(0, index) for t in self))


State = list[tuple[Tensor, Tensor]]


class Attention(nn.Module):
    r"""Attention scores over the encoder outputs, masked at padding.

    ``dot``: :math:`s_{ts} = h_t^\top m_s`; ``general``: :math:`s_{ts} = h_t^\top W_a m_s`;
    ``bahdanau``: :math:`s_{ts} = v^\top \tanh(W_q h_t + W_k m_s)`. Then
    :math:`a_t = \operatorname{softmax}(s_t)` with :math:`s_{ts} = -\infty` where :math:`s` is
    padding, and :math:`c_t = \sum_s a_{ts} m_s`. The parts that depend only on the memory
    (:math:`W_a m_s`, :math:`W_k m_s`) are computed once per sentence by :meth:`keys`.
    """

    def __init__(self, kind: str, query_size: int, memory_size: int, attention_size: int):
        super().__init__()
        if kind not in ATTENTION:
            raise UserError(f"--attention must be one of {', '.join(ATTENTION)}, got {kind!r}")
        self.kind = kind
        if kind == "dot":
            _check_dot(query_size, memory_size)
        if kind == "general":
            self.w_a = nn.Linear(memory_size, query_size, bias=False)
        elif kind == "bahdanau":
            self.w_k = nn.Linear(memory_size, attention_size, bias=False)
            self.w_q = nn.Linear(query_size, attention_size)
            self.v = nn.Linear(attention_size, 1, bias=False)

    def keys(self, memory: Tensor) -> Tensor:
        if self.kind == "general":
            return self.w_a(memory)
        if self.kind == "bahdanau":
            return self.w_k(memory)
        return memory

    def forward(self, query: Tensor, memory: Memory) -> tuple[Tensor, Tensor]:
        """``query (B, H)`` -> context ``(B, Dm)`` and weights ``(B, S)``."""
        if self.kind == "bahdanau":
            scores = self.v(torch.tanh(memory.keys + self.w_q(query).unsqueeze(1))).squeeze(2)
        else:
            scores = torch.bmm(memory.keys, query.unsqueeze(2)).squeeze(2)
        scores = scores.masked_fill(~memory.mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        context = torch.bmm(weights.unsqueeze(1), memory.values).squeeze(1)
        return context, weights


class Seq2Seq(nn.Module):
    """Encoder-decoder with attention (see the module docstring for the equations).

    ``forward(src, src_len, tgt_in) -> logits (B, T, V)`` under teacher forcing: ``src (B, S)``
    padded with 0, ``src_len (B,)``, ``tgt_in (B, T)`` the target shifted right (``<s> y``).
    """

    def __init__(self, cfg, src_vocab: int, tgt_vocab: int, *, share_embeddings: bool = False):
        super().__init__()
        E, H, L = cfg.embed_size, cfg.decoder.hidden_size, cfg.decoder.num_layers
        self.cfg = cfg
        self.src_embed = nn.Embedding(src_vocab, E, padding_idx=PAD)
        if share_embeddings:
            if src_vocab != tgt_vocab:
                raise ValueError("shared embeddings need one vocabulary")
            self.tgt_embed = self.src_embed
        else:
            self.tgt_embed = nn.Embedding(tgt_vocab, E, padding_idx=PAD)
        dec = asdict(cfg.decoder)
        dec_dropout = dec.pop("dropout")
        for name in ("num_layers", "hidden_size"):
            dec.pop(name)
        try:
            self.encoder = LSTM.from_config(
                LSTMConfig(input_size=E, batch_first=True, **asdict(cfg.encoder))
            )
            cell_in = E * 2 if cfg.input_feed else E
            self.cells = nn.ModuleList(
                LSTMCell(cell_in if layer == 0 else H, H, **dec) for layer in range(L)
            )
        except (ValueError, TypeError) as e:
            raise UserError(str(e)) from None
        enc = self.encoder
        memory_size = (enc.proj_size or enc.hidden_size) * (2 if enc.bidirectional else 1)
        self.bridge = nn.Linear(memory_size, L * H)
        self.attention = Attention(cfg.attention, H, memory_size, cfg.attention_size)
        self.combine = nn.Linear(memory_size + H, E, bias=False)
        self.out_bias = nn.Parameter(torch.zeros(tgt_vocab))
        self.out = None if cfg.tie_embeddings else nn.Linear(E, tgt_vocab, bias=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.layer_drop = nn.Dropout(dec_dropout)

    # ----- the encoder
    def encode(self, src: Tensor, src_len: Tensor) -> tuple[Memory, State]:
        """Memory and the decoder's initial state for ``src (B, S)`` of lengths ``src_len``."""
        B, S = src.shape
        x = self.drop(self.src_embed(src))
        packed = pack_padded_sequence(x, src_len.cpu(), batch_first=True, enforce_sorted=False)
        y, (h_n, _) = self.encoder(packed)
        values, _ = pad_packed_sequence(y, batch_first=True, total_length=S)
        values = self.drop(values)
        enc = self.encoder
        D = 2 if enc.bidirectional else 1
        last = h_n.view(enc.num_layers, D, B, -1)[-1].transpose(0, 1).reshape(B, -1)
        H, L = self.cfg.decoder.hidden_size, len(self.cells)
        h0 = torch.tanh(self.bridge(last)).view(B, L, H)
        state = [(h0[:, layer].contiguous(), h0.new_zeros(B, H)) for layer in range(L)]
        mask = torch.arange(S, device=src.device)[None, :] < src_len.to(src.device)[:, None]
        return Memory(values, self.attention.keys(values), mask), state

    # ----- the decoder
    def recurrent_masks(self, batch_size: int) -> list[Tensor | None]:
        """One variational dropout mask per layer and sentence (training only)."""
        return [
            cell.recurrent_dropout_mask(batch_size)
            if self.training and cell.recurrent_dropout
            else None
            for cell in self.cells
        ]

    def embed_target(self, y: Tensor) -> Tensor:
        """Dropped-out embeddings of target tokens (any shape ``(...)`` -> ``(..., E)``)."""
        return self.drop(self.tgt_embed(y))

    def step(
        self,
        x: Tensor,
        feed: Tensor,
        state: State,
        memory: Memory,
        masks: list[Tensor | None] | None = None,
    ) -> tuple[Tensor, State, Tensor]:
        """One decoder step: embedded previous tokens ``(B, E)`` (:meth:`embed_target`) and
        attentional vectors ``(B, E)`` -> the new attentional vectors ``(B, E)``, state and
        attention weights ``(B, S)``."""
        if self.cfg.input_feed:
            x = torch.cat([x, feed], dim=-1)
        new_state = []
        for layer, cell in enumerate(self.cells):
            mask = masks[layer] if masks else None
            if mask is None:
                h, c = cell(x, state[layer])
            else:
                h, c = cell(x, state[layer], dropout_mask=mask)
            new_state.append((h, c))
            x = self.layer_drop(h) if layer < len(self.cells) - 1 else h
        context, weights = self.attention(h, memory)
        attentional = torch.tanh(self.combine(torch.cat([context, h], dim=-1)))
        return attentional, new_state, weights

    def logits(self, attentional: Tensor) -> Tensor:
        """Output scores ``(..., V)`` from attentional vectors ``(..., E)``."""
        x = self.drop(attentional)
        if self.out is None:
            return F.linear(x, self.tgt_embed.weight, self.out_bias)
        return self.out(x) + self.out_bias

    def init_feed(self, batch_size: int, like: Tensor) -> Tensor:
        return like.new_zeros(batch_size, self.cfg.embed_size)

    def forward(self, src: Tensor, src_len: Tensor, tgt_in: Tensor) -> Tensor:
        memory, state = self.encode(src, src_len)
        B, T = tgt_in.shape
        feed = self.init_feed(B, memory.values)
        masks = self.recurrent_masks(B)
        # embedding all steps at once: per step, the backward would zero a (V, E) gradient
        emb = self.embed_target(tgt_in)
        outs = []
        for t in range(T):
            feed, state, _ = self.step(emb[:, t], feed, state, memory, masks)
            outs.append(feed)
        # one big output projection for all steps, outside the time loop
        return self.logits(torch.stack(outs, dim=1))


def label_smoothed_loss(logits: Tensor, target: Tensor, smoothing: float) -> Tensor:
    r"""Mean over non-padding target tokens of

    .. math:: \ell = -(1 - \varepsilon) \log p(y) - \frac{\varepsilon}{V} \sum_{k=1}^{V} \log p(k)

    (Szegedy et al. 2016), i.e. cross-entropy against :math:`(1-\varepsilon)\,\text{onehot}(y)
    + \varepsilon/V`; :math:`\varepsilon = 0` is the negative log-likelihood.
    """
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        target.reshape(-1),
        ignore_index=PAD,
        label_smoothing=smoothing,
    )


class Hypothesis(NamedTuple):
    """A decoded sentence: token ids (without ``<s>``/``</s>``), its total log-probability,
    the normalised score that ranked it, and attention weights ``(steps, S)``, one row per
    decoder step (``len(tokens) + 1`` with the step that emitted ``</s>``; ``len(tokens)`` for
    a hypothesis cut at the length limit)."""

    tokens: list[int]
    logprob: float
    score: float
    attention: Tensor


def max_lengths(src_len: Tensor, ratio: float) -> Tensor:
    """Most output tokens per sentence, ``</s>`` included: ``ceil(ratio * source tokens) + 5``."""
    return torch.ceil(src_len.float() * ratio).long() + 5


@torch.no_grad()
def greedy_decode(
    model: Seq2Seq, src: Tensor, src_len: Tensor, *, max_len_ratio: float = 2.0
) -> list[Hypothesis]:
    """The most probable token at every step, for a batch at once."""
    memory, state = model.encode(src, src_len)
    B = src.shape[0]
    limit = max_lengths(src_len, max_len_ratio).tolist()
    y = torch.full((B,), BOS, dtype=torch.long, device=src.device)
    feed = model.init_feed(B, memory.values)
    done = torch.zeros(B, dtype=torch.bool, device=src.device)
    tokens, logps, attns = [], [], []
    for t in range(max(limit)):
        feed, state, weights = model.step(model.embed_target(y), feed, state, memory)
        logp = torch.log_softmax(model.logits(feed), dim=-1)
        best, y = logp.max(dim=-1)
        tokens.append(y)
        logps.append(best)
        attns.append(weights)
        done |= (y == EOS) | (t + 1 >= torch.tensor(limit, device=src.device))
        if bool(done.all()):
            break
    tokens_t = torch.stack(tokens, 1).tolist()
    logp_t = torch.stack(logps, 1)
    attn_t = torch.stack(attns, 1)
    out = []
    for b in range(B):
        row = tokens_t[b][: limit[b]]
        n = row.index(EOS) if EOS in row else len(row)
        steps = min(n + 1, len(row))
        lp = float(logp_t[b, :steps].sum())
        out.append(Hypothesis(row[:n], lp, lp, attn_t[b, :steps, : int(src_len[b])].cpu()))
    return out


@torch.no_grad()
def beam_search(
    model: Seq2Seq,
    src: Tensor,
    src_len: Tensor,
    *,
    beam: int = 5,
    len_penalty: float = 1.0,
    max_len_ratio: float = 2.0,
) -> list[Hypothesis]:
    r"""Batched beam search with length normalisation.

    Each sentence keeps ``beam`` open hypotheses. A hypothesis ends when it emits ``</s>``
    among the ``beam`` best candidates of a step, or is cut at :func:`max_lengths`; a
    sentence is finished once it has ``beam`` ended hypotheses. The result is the ended
    hypothesis with the best normalised score

    .. math:: \text{score}(y) = \frac{\log p(y \mid x)}{|y|^{\alpha}}

    with :math:`|y|` the decoder steps (tokens including ``</s>``) and :math:`\alpha` =
    ``len_penalty`` (0: raw log-probability, which favours short outputs; 1: mean
    log-probability per token). With ``beam=1`` it returns what :func:`greedy_decode`
    returns (the tests check this).
    """
    if beam < 1:
        raise UserError(f"--beam must be >= 1, got {beam}")
    K = beam
    memory, state = model.encode(src, src_len)
    B, S = src.shape
    dev = src.device
    expand = torch.arange(B, device=dev).repeat_interleave(K)
    memory = memory.select(expand)
    state = [(h.index_select(0, expand), c.index_select(0, expand)) for h, c in state]
    feed = model.init_feed(B * K, memory.values)
    y = torch.full((B * K,), BOS, dtype=torch.long, device=dev)
    scores = torch.zeros(B, K, device=dev)
    scores[:, 1:] = float("-inf")  # all beams start equal: expand only the first one at t=0
    hist = torch.zeros(B * K, 0, dtype=torch.long, device=dev)
    attn_hist = torch.zeros(B * K, 0, S, device=dev)
    limit = max_lengths(src_len, max_len_ratio).tolist()
    ended: list[list[Hypothesis]] = [[] for _ in range(B)]
    done = [False] * B
    rank = torch.arange(2 * K, device=dev)
    base = (torch.arange(B, device=dev) * K)[:, None]

    def end(b: int, toks: list[int], steps: int, logprob: float, att: Tensor) -> None:
        norm = logprob / steps**len_penalty if math.isfinite(logprob) else logprob
        ended[b].append(Hypothesis(toks, logprob, norm, att[:, : int(src_len[b])].cpu()))

    for t in range(max(limit)):
        feed, state, weights = model.step(model.embed_target(y), feed, state, memory)
        logp = torch.log_softmax(model.logits(feed), dim=-1)
        V = logp.shape[-1]
        cand = (scores.unsqueeze(2) + logp.view(B, K, V)).view(B, K * V)
        top_s, top_i = cand.topk(min(2 * K, K * V), dim=1)
        parent_k, tok = top_i // V, top_i % V
        is_eos = tok == EOS
        # the first K candidates that do not end go on (there are at least K: one </s> per beam)
        order = torch.argsort(is_eos.long() * (2 * K) + rank[: tok.shape[1]], dim=1)[:, :K]
        next_s, next_parent, next_tok = (x.gather(1, order) for x in (top_s, parent_k, tok))
        parent = (base + next_parent).view(-1)
        att_all = torch.cat([attn_hist, weights.unsqueeze(1)], dim=1)  # step t belongs to parent
        ending = (is_eos & (rank[: tok.shape[1]] < K) & torch.isfinite(top_s)).nonzero().tolist()
        if ending:
            hist_rows = hist.tolist()
            for b, r in ending:
                if not done[b]:
                    p = b * K + int(parent_k[b, r])
                    end(b, hist_rows[p], len(hist_rows[p]) + 1, float(top_s[b, r]), att_all[p])
        hist = torch.cat([hist.index_select(0, parent), next_tok.view(-1, 1)], dim=1)
        attn_hist = att_all.index_select(0, parent)
        cut = [b for b in range(B) if not done[b] and t + 1 >= limit[b]]
        if cut:
            hist_rows = hist.tolist()
            for b in cut:
                for k in range(K):
                    p = b * K + k
                    end(b, hist_rows[p], t + 1, float(next_s[b, k]), attn_hist[p])
        for b in range(B):
            done[b] = done[b] or len(ended[b]) >= K
        if all(done):
            break
        scores, y = next_s, next_tok.view(-1)
        feed = feed.index_select(0, parent)
        state = [(h.index_select(0, parent), c.index_select(0, parent)) for h, c in state]
    return [max(e, key=lambda h: h.score) for e in ended]
