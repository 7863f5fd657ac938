"""Parallel text made ready for a sequence-to-sequence model: which pair of files a split or a
``--data`` argument names, the source and target vocabularies fitted on the training pairs (or
restored from a checkpoint), and the pairs encoded with those whose length the model cannot
take left out.

Reading the files themselves is :func:`lstmkit.data.parallel.read_parallel`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from lstmkit.data.parallel import ParallelText
from lstmkit.data.tokenize import TextTokenizer, fit_tokenizer
from lstmkit.utils.errors import UserError

Ids = list[list[int]]


def _with_gz(path: Path, *, prefer_gz: bool) -> Path:
    """``path`` or its ``.gz`` beside it: with ``prefer_gz`` the ``.gz`` unless only the plain
    file exists, else the plain file unless only the ``.gz`` exists."""
    gz = path.with_name(path.name + ".gz")
    if prefer_gz:
        return gz if gz.exists() or not path.exists() else path
    return gz if gz.exists() and not path.exists() else path


def split_paths(
    split: str, explicit: tuple[str, str], data_dir: str, prefix: str, langs: tuple[str, str]
) -> tuple[Path, Path]:
    """The source and target files of ``split``: the ``explicit`` pair (``--SPLIT-src``,
    ``--SPLIT-tgt``) when given, else ``DATA_DIR/PREFIX.LANG`` (its ``.gz`` when there)."""
    if all(explicit):
        return Path(explicit[0]), Path(explicit[1])
    if any(explicit):
        which = "src" if not explicit[0] else "tgt"
        raise UserError(
            f"--{split}-src and --{split}-tgt go together; --{split}-{which} is missing"
        )
    src, tgt = (_with_gz(Path(data_dir) / f"{prefix}.{lang}", prefer_gz=True) for lang in langs)
    return src, tgt


def data_arg_paths(path: str, langs: tuple[str, str]) -> tuple[Path, Path]:
    """The two files of a ``--data`` argument: ``SRC,TGT``, or a ``PREFIX`` with PREFIX.SRC_LANG
    and PREFIX.TGT_LANG beside it (or their ``.gz``); each must exist."""
    if "," in path:
        parts = path.split(",")
        if len(parts) != 2 or not all(parts):
            raise UserError(f"--data {path}: give SRC,TGT (two files) or a PREFIX")
        src, tgt = Path(parts[0]), Path(parts[1])
    else:
        src, tgt = (_with_gz(Path(f"{path}.{lang}"), prefer_gz=False) for lang in langs)
    for f in (src, tgt):
        if not f.is_file():
            raise UserError(
                f"--data: file not found: {f} (give SRC,TGT, or a PREFIX of PREFIX."
                f"{langs[0]} and PREFIX.{langs[1]})"
            )
    return src, tgt


def fit_vocabularies(
    train: ParallelText, kind: str, vocab_size: int, lowercase: bool, shared: bool
) -> tuple[TextTokenizer, TextTokenizer]:
    """Source and target tokenizers of ``kind`` fitted on ``train`` (one object for both sides
    when ``shared``); ``vocab_size`` caps each vocabulary."""
    kw = dict(lowercase=lowercase, vocab_size=vocab_size)
    if kind != "bpe":
        kw["max_size"] = vocab_size
    if shared:
        tok = fit_tokenizer(train.src + train.tgt, kind, **kw)
        return tok, tok
    return fit_tokenizer(train.src, kind, **kw), fit_tokenizer(train.tgt, kind, **kw)


def vocabularies_state(src: TextTokenizer, tgt: TextTokenizer) -> dict:
    """The checkpoint's record of both vocabularies (``tgt_tokenizer`` None when shared)."""
    return {"src_tokenizer": src.state(), "tgt_tokenizer": None if tgt is src else tgt.state()}


def vocabularies_from_state(state: dict) -> tuple[TextTokenizer, TextTokenizer]:
    """The inverse of :func:`vocabularies_state`."""
    src = TextTokenizer.from_state(state["src_tokenizer"])
    tgt_state = state.get("tgt_tokenizer")
    return src, src if tgt_state is None else TextTokenizer.from_state(tgt_state)


def encode_within(
    pairs: ParallelText, src_tok: TextTokenizer, tgt_tok: TextTokenizer, max_len: int
) -> tuple[Ids, Ids, int]:
    """The encoded pairs with 1 to ``max_len`` tokens on both sides, and how many were left
    out."""
    src, tgt = src_tok.encode_batch(pairs.src), tgt_tok.encode_batch(pairs.tgt)
    keep = [i for i in range(len(src)) if 0 < len(src[i]) <= max_len and 0 < len(tgt[i]) <= max_len]
    return [src[i] for i in keep], [tgt[i] for i in keep], len(src) - len(keep)


def by_length(seqs: Sequence[Sequence[int]], size: int) -> Iterator[list[int]]:
    """Positions of ``seqs`` in groups of ``size``, shortest first (ties in input order), so
    that a batch of each group pads little."""
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    for k in range(0, len(order), size):
        yield order[k : k + size]
