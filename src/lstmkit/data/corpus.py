"""Text corpora for language modelling: files read into one token stream per split, and the
truncated-backpropagation-through-time (TBPTT) layout of that stream.

Reading (:func:`read_corpus`): one or more plain or ``.gz`` files in any encoding (bad bytes are
an error naming the file, the line and the byte). An empty file is an error. ``\\r\\n`` line
ends become ``\\n``. Files are joined in the order given, with a ``\\n`` added after a file that
does not end with one. There is no limit on the length of a line or a file: the stream is held
in memory as 32-bit token ids (4 bytes per token).

Splits (:func:`split_text`): validation and test text come from their own files or, failing
that, from the end of the training text: ``[train | valid | test]`` cut at
``int(n * (1 - valid_fraction - test_fraction))`` and ``int(n * (1 - test_fraction))`` characters,
as nanoGPT's ``shakespeare_char/prepare.py`` does (for word tokens the cut moves on to the next
line end, so that no word is cut in two).

Token streams (:func:`encode_stream`): characters are tokens as they are, newlines included;
words are the tokens of each line followed by the end-of-line token ``</s>``, and empty lines
are skipped (and counted: ``empty_lines`` in the statistics, which the task prints and saves).
Whitespace tokens (a pre-tokenized corpus) are the words of each line followed by ``<eos>``, an
empty line included: that is how the word-level benchmarks count (the PyTorch
``word_language_model`` and AWD-LSTM ``data.py``, whose counts are the published ones, e.g.
WikiText-2's 2,088,628 training tokens), so the count is the same as :func:`count_words`.

Words (:func:`count_words`): the unit of a word-level perplexity in the papers' convention, the
whitespace-separated words of the text plus one end of line per line.

TBPTT layout (:class:`StreamLayout`): the training stream is cut into ``B`` parallel streams of
``L`` tokens each; step ``k`` reads the ``T``-token chunk ``k mod n_chunks`` of every stream, so
the hidden state left by step ``k - 1`` is the right initial state of step ``k``. Each pass over
the data (``n_chunks`` steps) starts the streams at a fresh offset in ``[0, T)`` drawn from
``(seed, pass)``, so that chunk boundaries move from pass to pass. A batch is a pure function of
``(seed, step)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from lstmkit.data.sampling import rank_slice
from lstmkit.data.text import read_text
from lstmkit.data.tokenize import EOS, TextTokenizer
from lstmkit.utils.errors import UserError


@dataclass
class CorpusText:
    """The joined text of some files, and what reading them did."""

    text: str
    files: list[str] = field(default_factory=list)
    lines: int = 0
    empty_lines: int = 0
    crlf: int = 0
    """``\\r\\n`` line ends turned into ``\\n``."""


def parse_paths(spec: str, option: str) -> list[str]:
    """``a.txt,b.txt`` -> the files, each checked to exist (the error names ``option``)."""
    paths = [p.strip() for p in spec.split(",") if p.strip()]
    if not paths:
        raise UserError(f"{option}: no file given")
    for p in paths:
        if not os.path.exists(p):
            raise UserError(f"{option}: file not found: {p}")
        if os.path.isdir(p):
            raise UserError(f"{option}: {p} is a folder; give text files (comma-separated)")
    return paths


def read_corpus(paths: list[str], encoding: str = "utf-8") -> CorpusText:
    """The text of ``paths`` joined in order (see the module docstring for the rules)."""
    parts: list[str] = []
    out = CorpusText("", files=[str(p) for p in paths])
    for p in paths:
        text = read_text(p, encoding)
        if not text:
            raise UserError(f"{p} is empty")
        out.crlf += text.count("\r\n")
        text = text.replace("\r\n", "\n")
        if not text.endswith("\n"):
            text += "\n"
        lines = text.split("\n")[:-1]
        out.lines += len(lines)
        out.empty_lines += sum(1 for line in lines if not line.strip())
        parts.append(text)
    out.text = "".join(parts)
    return out


def split_text(
    text: str, valid_fraction: float, test_fraction: float, *, at_line_end: bool
) -> tuple[str, str, str]:
    """``[train | valid | test]`` from the end of ``text`` (fractions of its characters)."""
    n = len(text)

    def cut(at: int) -> int:
        if at_line_end and 0 < at < n:
            nl = text.find("\n", at - 1)
            return n if nl < 0 else nl + 1
        return at

    a = cut(int(n * (1 - valid_fraction - test_fraction)))
    b = cut(int(n * (1 - test_fraction))) if test_fraction else n
    return text[:a], text[a:b], text[b:]


def encode_stream(tok: TextTokenizer, text: str) -> np.ndarray:
    """Token ids of ``text`` as one stream (int32); words get ``</s>`` at each line end and
    empty lines give nothing; whitespace tokens get ``<eos>`` at every line end."""
    if tok.kind == "char":
        ids = tok.encode(text)
    elif tok.kind == "whitespace":
        ids = []
        for line in _lines(text):
            ids.extend(tok.encode(line))
            ids.append(EOS)
    else:
        ids = []
        lines = [line for line in text.split("\n") if line.strip()]
        for line_ids in tok.encode_batch(lines):
            ids.extend(line_ids)
            ids.append(EOS)
    return np.asarray(ids, dtype=np.int32)


def _lines(text: str) -> list[str]:
    """The lines of ``text``; a final line end ends the last line (it starts no new one)."""
    if not text:
        return []
    return text[:-1].split("\n") if text.endswith("\n") else text.split("\n")


def count_words(text: str) -> int:
    """Words of ``text`` in the word-level benchmarks' convention: whitespace-separated words
    plus one end of line (``<eos>``) per line, empty lines included."""
    lines = _lines(text)
    return sum(len(line.split()) for line in lines) + len(lines)


def _pass_offset(seed: int, n_pass: int, seq_len: int) -> int:
    rng = np.random.default_rng([seed & 0xFFFFFFFF, n_pass, 0x7B77])
    return int(rng.integers(0, seq_len))


@dataclass(frozen=True)
class StreamLayout:
    """Where training step ``k`` reads in a stream of ``n_tokens`` (see the module docstring).

    ``length`` (L) is the number of input positions of each of the ``batch_size`` (B) streams;
    it leaves room for any offset in ``[0, seq_len)``, so all passes have the same
    ``n_chunks = ceil(L / T)`` steps (the last chunk of a pass may be shorter than T).
    """

    n_tokens: int
    batch_size: int
    seq_len: int

    @property
    def length(self) -> int:
        return (self.n_tokens - 1 - (self.seq_len - 1)) // self.batch_size

    @property
    def n_chunks(self) -> int:
        return -(-self.length // self.seq_len)

    def check(self) -> None:
        if self.length < 1:
            raise UserError(
                f"the training text has {self.n_tokens} tokens: too few for --batch-size "
                f"{self.batch_size} streams with --seq-len {self.seq_len} (each stream needs at "
                "least one token); lower --batch-size or --seq-len, or give more text"
            )

    def where(self, step: int, seed: int) -> tuple[int, int, int]:
        """``(pass, chunk, offset)`` of training step ``step``."""
        n_pass, chunk = divmod(step, self.n_chunks)
        return n_pass, chunk, _pass_offset(seed, n_pass, self.seq_len)

    def batch(
        self, data: np.ndarray, step: int, seed: int, rank: int = 0, world: int = 1
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """``(inputs, targets, chunk)``: this process's ``(B / world, t)`` slice of step
        ``step`` (``t <= T``), and the chunk number (0 starts a pass: the state resets)."""
        _, chunk, offset = self.where(step, seed)
        L, T = self.length, self.seq_len
        streams = rank_slice(np.arange(self.batch_size), rank, world)
        start = offset + streams * L + chunk * T
        t = min(T, L - chunk * T)
        idx = start[:, None] + np.arange(t)[None, :]
        return data[idx], data[idx + 1], chunk
