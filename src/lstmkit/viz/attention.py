"""The attention heatmap of one translated sentence: rows the output tokens (and ``</s>``),
columns the source tokens, BPE pieces labelled as words and word continuations."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lstmkit.viz import plots

_JOIN_NOTE = {"bpe": "; -x continues the word before"}  # by tokenizer kind


def word_labels(pieces: list[str]) -> list[str]:
    """Tick labels for BPE pieces: the ``▁`` word mark dropped, so that a word-initial piece
    reads as the word, and a piece that continues a word shown as ``-piece`` (punctuation
    as it is); a lone ``▁`` (a space) as ``␣``; special tokens such as ``</s>`` unchanged."""
    out = []
    for p in pieces:
        if p.startswith("▁"):
            out.append(p[1:] or "␣")
        elif out and any(ch.isalnum() for ch in p) and not (p.startswith("<") and p.endswith(">")):
            out.append("-" + p)
        else:
            out.append(p)
    return out


def token_labels(tok: Any, ids: Sequence[int]) -> list[str]:
    """Tick labels of the token ids of a :class:`lstmkit.data.tokenize.TextTokenizer`: its
    subwords through :func:`word_labels` for BPE, its vocabulary entries otherwise."""
    if tok.kind == "bpe":
        return word_labels([tok._bpe.id_to_token(i) or "?" for i in ids])  # noqa: SLF001
    return [tok.itos[i] for i in ids]


def _short(text: str, n: int = 70) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def plot_attention(
    hyp: Any, source: str, tokenizers: tuple[Any, Any], langs: tuple[str, str], path
) -> Path:
    """Write the heatmap of the attention of ``hyp`` (a
    :class:`lstmkit.models.seq2seq.Hypothesis` of ``source``; weights in [0, 1]) with the
    ``(source, target)`` tokenizers' labels: rows the output tokens and then ``</s>``, columns
    the source tokens (``</s>`` alone for a source of no tokens). A BPE side's axis label says
    how its continuations read."""
    src_tok, tgt_tok = tokenizers
    attention = hyp.attention.numpy()
    rows = token_labels(tgt_tok, hyp.tokens)
    rows += ["</s>"] * (attention.shape[0] - len(rows))
    src_note, tgt_note = (_JOIN_NOTE.get(t.kind, "") for t in tokenizers)
    return plots.plot_heatmap(
        attention,
        Path(path),
        row_labels=rows,
        col_labels=token_labels(src_tok, src_tok.encode(source)) or ["</s>"],
        title=f"{_short(source)}\n→ {_short(tgt_tok.decode(hyp.tokens))}",
        xlabel=f"source subwords ({langs[0]}){src_note}",
        ylabel=f"output subwords ({langs[1]}){tgt_note}",
        vmin=0.0,
        vmax=1.0,
        annotate=False,
    )
