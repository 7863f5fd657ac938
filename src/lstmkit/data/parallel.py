"""Parallel text for translation: two files, one sentence per line, line *i* of one the
translation of line *i* of the other.

:func:`read_parallel` reads a pair of plain or gzipped files in any encoding (through
:func:`lstmkit.data.text.read_lines`, so undecodable bytes name the file, line and byte),
checks that the line counts agree (the error names both files and both counts), and skips the
pairs where either side is empty, counting them in :attr:`ParallelText.skipped`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from lstmkit.data.text import read_lines
from lstmkit.utils.errors import UserError

MAX_SENTENCE_CHARS = 10_000  # a pair with a longer side is skipped and counted


@dataclass
class ParallelText:
    """Sentence pairs; ``skipped`` counts the pairs dropped because a side was empty."""

    src: list[str] = field(default_factory=list)
    tgt: list[str] = field(default_factory=list)
    skipped: int = 0
    src_path: str = ""
    tgt_path: str = ""

    def __len__(self) -> int:
        return len(self.src)

    def head(self, n: int) -> ParallelText:
        """The first ``n`` pairs (all of them when ``n`` is 0)."""
        if not n:
            return self
        return ParallelText(self.src[:n], self.tgt[:n], self.skipped, self.src_path, self.tgt_path)


def read_parallel(
    src_path: str | os.PathLike,
    tgt_path: str | os.PathLike,
    encoding: str = "utf-8",
    *,
    what: str = "parallel data",
    max_chars: int = MAX_SENTENCE_CHARS,
) -> ParallelText:
    """The sentence pairs of two line-aligned files (``.gz`` read transparently).

    Leading and trailing whitespace is stripped from each side; a pair with an empty side is
    skipped and counted. Mismatched line counts are a :class:`UserError` naming both files.
    """
    src_lines = read_lines(src_path, encoding)
    tgt_lines = read_lines(tgt_path, encoding)
    if len(src_lines) != len(tgt_lines):
        raise UserError(
            f"{what}: the files do not pair up: {Path(src_path)} has {len(src_lines)} lines but "
            f"{Path(tgt_path)} has {len(tgt_lines)}"
        )
    out = ParallelText(src_path=str(src_path), tgt_path=str(tgt_path))
    too_long = 0
    for s, t in zip(src_lines, tgt_lines, strict=True):
        s, t = s.strip(), t.strip()
        if not s or not t or len(s) > max_chars or len(t) > max_chars:
            out.skipped += 1
            too_long += len(s) > max_chars or len(t) > max_chars
            continue
        out.src.append(s)
        out.tgt.append(t)
    if too_long:
        print(
            f"lstmkit: warning: {what}: {too_long} pair(s) of {Path(src_path)} and "
            f"{Path(tgt_path)} longer than {max_chars:,} characters were skipped (no sentence "
            "is that long; the tokenizer's memory would grow with them)",
            file=sys.stderr,
        )
    if not out.src:
        raise UserError(
            f"{what}: no sentence pairs in {Path(src_path)} and {Path(tgt_path)} "
            f"({out.skipped} empty pairs skipped)"
        )
    return out
