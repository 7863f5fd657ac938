"""The train, valid and test token streams of a text corpus, and what they hold.

The training text is read from its files (:func:`~lstmkit.data.corpus.read_corpus`); the
validation and test text from their own files or cut off the end of the training text
(:func:`~lstmkit.data.corpus.split_text`). A tokenizer fitted on the training part encodes each
split as one stream (:func:`~lstmkit.data.corpus.encode_stream`), and the counts (characters,
lines, tokens, words, ``<unk>``, types) go to the data report and to one line on stderr.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lstmkit.data.corpus import (
    CorpusText,
    count_words,
    encode_stream,
    parse_paths,
    read_corpus,
    split_text,
)
from lstmkit.data.tokenize import EOS, UNK, TextTokenizer, fit_tokenizer

SPLITS = ("train", "valid", "test")
TOKEN_UNITS = {
    "char": "character (newlines included)",
    "word": "regex piece (\\w+(?:'\\w+)*|[^\\w\\s]) or </s> per non-empty line",
    "bpe": "BPE piece or </s> per non-empty line",
    "whitespace": "whitespace-separated word or <eos> per line",
}
"""What one token of each tokenizer is: the unit of ``loss`` and ``ppl``."""


@dataclass
class SplitTexts:
    """The text of each split, before tokenizing."""

    texts: dict[str, str]
    files: dict[str, dict]
    """:func:`file_stats` of the files each split was read from (train always; valid and test
    when given their own files)."""
    corpus: CorpusText
    """The training files as read, the held-out text not yet cut off."""


@dataclass
class CorpusSplits:
    """The token stream of each split and its counts."""

    ids: dict[str, np.ndarray]
    words: dict[str, int]
    """Whitespace-separated words plus one ``<eos>`` per line (:func:`count_words`)."""
    stats: dict
    """What the data report shows: :attr:`SplitTexts.files` per split, then ``tokens``,
    ``words``, ``unk`` per split, ``vocab``, ``types`` and ``token`` (the unit)."""


def file_stats(c: CorpusText) -> dict:
    return {
        "files": c.files,
        "characters": len(c.text),
        "lines": c.lines,
        "empty_lines": c.empty_lines,
        "crlf_line_ends": c.crlf,
    }


def read_split_texts(
    train: str,
    valid: str,
    test: str,
    valid_fraction: float,
    test_fraction: float,
    encoding: str,
    *,
    at_line_end: bool,
) -> SplitTexts:
    """Read ``--train`` (and ``--valid``, ``--test``: comma-separated files); a split without
    files of its own is the last ``*_fraction`` of the training text (cut at a line end when
    ``at_line_end``), or empty when its fraction is 0."""
    corpus = read_corpus(parse_paths(train, "--train"), encoding)
    texts = {"train": corpus.text, "valid": "", "test": ""}
    files = {"train": file_stats(corpus)}
    fractions = (0.0 if valid else valid_fraction, 0.0 if test else test_fraction)
    if any(fractions):
        texts["train"], texts["valid"], texts["test"] = split_text(
            corpus.text, *fractions, at_line_end=at_line_end
        )
    for split, spec in (("valid", valid), ("test", test)):
        if spec:
            other = read_corpus(parse_paths(spec, f"--{split}"), encoding)
            texts[split] = other.text
            files[split] = file_stats(other)
    return SplitTexts(texts, files, corpus)


def read_stream(
    spec: str, option: str, encoding: str, tok: TextTokenizer
) -> tuple[np.ndarray, int]:
    """Token ids and word count of file(s) ``spec`` (given as ``option``) read as one stream."""
    corpus = read_corpus(parse_paths(spec, option), encoding)
    return encode_stream(tok, corpus.text), count_words(corpus.text)


def fit_training_tokenizer(
    text: str,
    kind: str,
    *,
    lowercase: bool,
    min_count: int,
    max_size: int,
    vocab_size: int,
    unk_token: str,
) -> TextTokenizer:
    """The tokenizer fitted on the training text: characters on the whole text, the others line
    by line; the data's own ``unk_token`` is kept only by word tokens."""
    return fit_tokenizer(
        [text] if kind == "char" else text.split("\n"),
        kind,
        lowercase=lowercase,
        min_count=min_count,
        max_size=max_size,
        vocab_size=vocab_size,
        unk_token=unk_token if kind in ("word", "whitespace") else "",
    )


def encode_splits(tok: TextTokenizer, read: SplitTexts) -> CorpusSplits:
    ids = {k: encode_stream(tok, v) for k, v in read.texts.items()}
    words = {k: count_words(v) for k, v in read.texts.items()}
    specials = set(range(4)) - {UNK, EOS}
    seen = np.unique(ids["train"])
    summary = {
        "tokens": {k: int(len(v)) for k, v in ids.items()},
        "words": dict(words),
        "unk": {k: int((v == UNK).sum()) for k, v in ids.items()},
        "vocab": len(tok),
        # the word types of the training text, its <unk> and <eos> included, as the
        # benchmarks count their vocabulary (PTB: 10,000); the model's vocabulary adds the
        # special tokens it never sees
        "types": int(sum(1 for i in seen.tolist() if i not in specials)),
        "token": TOKEN_UNITS[tok.kind],
    }
    return CorpusSplits(ids, words, {**read.files, **summary})


def summary_line(splits: CorpusSplits, corpus: CorpusText, tok: TextTokenizer, kind: str) -> str:
    """``read FILES: ...``: what was read and how it was tokenized (``kind``: --tokenizer)."""
    s = splits.stats
    empty = {"char": ", kept as newlines", "whitespace": ", one <eos> each"}
    return (
        f"read {', '.join(corpus.files)}: {len(corpus.text):,} characters, "
        f"{corpus.lines:,} lines ({corpus.empty_lines:,} empty"
        + empty.get(kind, ", skipped")
        + (f"; {corpus.crlf:,} \\r\\n line ends read as \\n" if corpus.crlf else "")
        + f"); one token = one {TOKEN_UNITS[tok.kind]} ({kind}); vocabulary "
        + f"{len(tok):,} ({s['types']:,} types in the training text); tokens "
        + ", ".join(f"{k} {n:,}" for k, n in s["tokens"].items())
        + "; words (+ <eos> per line) "
        + ", ".join(f"{k} {n:,}" for k, n in s["words"].items())
        + "; <unk> "
        + ", ".join(f"{k} {n:,}" for k, n in s["unk"].items())
        + (f" (--unk-token {tok.unk_token} in the data included)" if tok.unk_token else "")
    )


def flat_report(stats: dict, vocab: int) -> dict:
    """:attr:`CorpusSplits.stats` as flat columns: ``train_files_characters`` (the files read,
    before held-out text is cut off them), ``valid_tokens``, ..., ``vocab`` (``vocab`` when the
    stats have none), ``types``, ``token``."""
    out: dict = {}
    for split in SPLITS:
        for key, value in stats.get(split, {}).items():
            if key != "files":
                out[f"{split}_files_{key}"] = value
    for key in ("tokens", "words", "unk"):
        for split, n in stats.get(key, {}).items():
            out[f"{split}_{key}"] = n
    out["vocab"] = stats.get("vocab", vocab)
    for key in ("types", "token"):
        if key in stats:
            out[key] = stats[key]
    return out
