"""Tokenisers fitted on training text and saved in checkpoints as JSON.

Four kinds, one interface (:class:`TextTokenizer`):

- ``whitespace``: the tokens are the whitespace-separated words of the text as it is, for a
  corpus that is already tokenized (Penn Treebank, WikiText: ``mr.``, ``'s``, ``well-known``
  and ``<unk>`` are one token each); optional lower-casing; same vocabulary rules as ``word``.
  A language model adds one end-of-line token ``<eos>`` per line, so token counts are those
  the word-level benchmarks publish.
- ``word``: a regular expression splits words, numbers and single punctuation marks
  (``\\w+(?:'\\w+)*|[^\\w\\s]``); optional lower-casing; a vocabulary of the words seen at least
  ``min_count`` times, the ``max_size`` most frequent, the rest mapped to ``<unk>``. With
  ``contractions``, English clitics are split off as in the Penn Treebank (``doesn't`` ->
  ``does n't``, ``it's`` -> ``it 's``), so negations share one token.
- ``char``: one token per character (Unicode code point), same vocabulary rules.
- ``bpe``: byte-pair encoding trained on the training text with HF ``tokenizers`` (whitespace
  kept as the ``▁`` marker, so decoding gives back the text exactly).

Every vocabulary starts with the special tokens ``<pad>`` (id 0), ``<unk>`` (1), ``<s>`` (2)
and ``</s>`` (3; written ``<eos>`` for ``whitespace`` tokens, as the benchmarks write it).

``unk_token`` (``word`` and ``whitespace``): a token of the data that stands for a word outside
the data's vocabulary (PTB and WikiText write ``<unk>``). It is encoded as the model's ``<unk>``
(id 1), counted as unknown and never a vocabulary entry of its own; the ``word`` tokenizer keeps
it whole instead of cutting ``<unk>`` into ``<``, ``unk``, ``>``. It is matched before
lower-casing. A special token's own string in the data is that special token anyway.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from lstmkit.utils.errors import UserError

KINDS = ("word", "char", "bpe", "whitespace")
SPECIALS = ("<pad>", "<unk>", "<s>", "</s>")
WHITESPACE_SPECIALS = ("<pad>", "<unk>", "<s>", "<eos>")
PAD, UNK, BOS, EOS = range(4)
WORD_RE = re.compile(r"\w+(?:'\w+)*|[^\w\s]")
# Penn Treebank clitics: "n't" and "'s", "'re", "'ll", ... become tokens of their own
_CLITIC = r"(?:n't|'(?:s|re|ve|ll|d|m))\b"
CLITIC_RE = re.compile(rf"\w+?(?={_CLITIC})|{_CLITIC}|\w+(?:'\w+)*|[^\w\s]", re.IGNORECASE)


class TextTokenizer:
    """Text to ids and back. Build with :func:`fit_tokenizer` or :meth:`from_state`."""

    def __init__(
        self,
        kind: str,
        lowercase: bool,
        tokens: list[str] | None = None,
        bpe=None,
        contractions: bool = False,
        unk_token: str = "",
    ):
        if kind not in KINDS:
            raise UserError(f"--tokenizer must be one of {', '.join(KINDS)}, got {kind!r}")
        if contractions and kind != "word":
            raise UserError(f"splitting contractions needs --tokenizer word, got {kind!r}")
        if unk_token and kind not in ("word", "whitespace"):
            raise UserError(f"--unk-token needs --tokenizer whitespace or word, got {kind!r}")
        if unk_token and (unk_token.split() != [unk_token]):
            raise UserError(f"--unk-token {unk_token!r}: give one token without whitespace")
        self.kind, self.lowercase, self.contractions = kind, lowercase, contractions
        self.unk_token = unk_token
        self.itos = list(tokens) if tokens is not None else list(specials(kind))
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        self._bpe = bpe
        self._unk_re = re.compile(f"({re.escape(unk_token)})") if unk_token else None

    # ----- the two directions
    def split(self, text: str) -> list[str]:
        """The token strings of ``text`` (before the vocabulary; for display)."""
        if self.kind == "whitespace":
            words = text.split()
            if self.lowercase:
                words = [w if w == self.unk_token else w.lower() for w in words]
            return words
        if self.kind == "word" and self._unk_re is not None:
            # the data's unknown token is kept whole (and not lower-cased); the text between
            # two of them is split as usual
            out: list[str] = []
            for k, piece in enumerate(self._unk_re.split(text)):
                out.extend([piece] if k % 2 else self._split_words(piece))
            return out
        if self.kind == "word":
            return self._split_words(text)
        if self.lowercase:
            text = text.lower()
        if self.kind == "char":
            return list(text)
        return self._bpe.encode(text, add_special_tokens=False).tokens

    def _split_words(self, text: str) -> list[str]:
        if self.lowercase:
            text = text.lower()
        return (CLITIC_RE if self.contractions else WORD_RE).findall(text)

    def encode(self, text: str) -> list[int]:
        if self.kind == "bpe":
            if self.lowercase:
                text = text.lower()
            return self._bpe.encode(text, add_special_tokens=False).ids
        unk = self.unk_token
        return [UNK if t == unk else self.stoi.get(t, UNK) for t in self.split(text)]

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        if self.kind == "bpe":
            texts = [t.lower() for t in texts] if self.lowercase else texts
            return [e.ids for e in self._bpe.encode_batch(texts, add_special_tokens=False)]
        return [self.encode(t) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids`` without special tokens (words are joined by single spaces)."""
        ids = [int(i) for i in ids if int(i) not in (PAD, BOS, EOS)]
        if self.kind == "bpe":
            return self._bpe.decode(ids, skip_special_tokens=False)
        sep = "" if self.kind == "char" else " "
        return sep.join(self.itos[i] for i in ids)

    def token(self, i: int) -> str:
        """The string of token id ``i`` (a BPE piece keeps its ``▁`` word marker)."""
        return self._bpe.id_to_token(int(i)) if self.kind == "bpe" else self.itos[int(i)]

    def __len__(self) -> int:
        return self._bpe.get_vocab_size() if self.kind == "bpe" else len(self.itos)

    # ----- checkpoints
    def state(self) -> dict:
        out = {"kind": self.kind, "lowercase": self.lowercase}
        if self.contractions:
            out["contractions"] = True
        if self.unk_token:
            out["unk_token"] = self.unk_token
        if self.kind == "bpe":
            out["bpe"] = self._bpe.to_str()
        else:
            out["tokens"] = self.itos
        return out

    @classmethod
    def from_state(cls, state: dict) -> TextTokenizer:
        try:
            kind, lowercase = state["kind"], bool(state["lowercase"])
            if kind == "bpe":
                from tokenizers import Tokenizer

                return cls(kind, lowercase, bpe=Tokenizer.from_str(state["bpe"]))
            contractions = bool(state.get("contractions", False))
            return cls(
                kind,
                lowercase,
                tokens=list(state["tokens"]),
                contractions=contractions,
                unk_token=str(state.get("unk_token", "")),
            )
        except (KeyError, TypeError, ValueError, Exception) as e:
            if isinstance(e, UserError):
                raise
            raise UserError(f"checkpoint tokenizer is damaged: {e}") from None


def fit_tokenizer(
    texts: Iterable[str],
    kind: str = "word",
    *,
    lowercase: bool = True,
    min_count: int = 1,
    max_size: int = 0,
    vocab_size: int = 8000,
    contractions: bool = False,
    unk_token: str = "",
) -> TextTokenizer:
    """A tokenizer fitted on ``texts`` (``max_size`` 0: no limit; ``vocab_size``: BPE only;
    ``unk_token``: the data's own unknown token, see the module docstring)."""
    if min_count < 1:
        raise UserError(f"--min-count must be >= 1, got {min_count}")
    if max_size < 0:
        raise UserError(f"--max-vocab must be >= 0, got {max_size}")
    if kind == "bpe":
        return _fit_bpe(texts, lowercase, vocab_size)
    tok = TextTokenizer(kind, lowercase, contractions=contractions, unk_token=unk_token)
    counts = Counter(t for text in texts for t in tok.split(text))
    counts.pop(unk_token, None)
    # most frequent first; ties in first-seen order would depend on the data order, so by token
    ranked = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
    ranked = [t for t in ranked if t not in tok.stoi]
    if max_size:
        ranked = ranked[: max(0, max_size - len(SPECIALS))]
    tokens = list(specials(kind)) + ranked
    return TextTokenizer(
        kind, lowercase, tokens=tokens, contractions=contractions, unk_token=unk_token
    )


def specials(kind: str) -> tuple[str, ...]:
    """The special tokens of a vocabulary of ``kind`` (ids 0-3)."""
    return WHITESPACE_SPECIALS if kind == "whitespace" else SPECIALS


def _fit_bpe(texts: Iterable[str], lowercase: bool, vocab_size: int) -> TextTokenizer:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    if vocab_size < len(SPECIALS) + 1:
        raise UserError(f"--vocab-size must be > {len(SPECIALS)}, got {vocab_size}")
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    if lowercase:
        bpe.normalizer = normalizers.Lowercase()
    bpe.pre_tokenizer = pre_tokenizers.Metaspace()
    bpe.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIALS), show_progress=False
    )
    bpe.train_from_iterator(list(texts), trainer)
    # lower-casing lives in the normaliser, so encode() must not lower again
    return TextTokenizer("bpe", False, bpe=bpe)
