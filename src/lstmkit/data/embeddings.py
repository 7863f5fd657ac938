"""Pretrained word vectors from a local text file (word2vec text format or GloVe).

word2vec's text format starts with a header line ``COUNT DIM``; GloVe has none. Every other line
is a word followed by ``DIM`` numbers separated by spaces. Only the words asked for are kept, so a
multi-gigabyte file costs one pass and the memory of the vocabulary.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from lstmkit.utils.errors import UserError


def read_vectors(
    path: str | os.PathLike, words: set[str] | dict[str, int], encoding: str = "utf-8"
) -> tuple[dict[str, np.ndarray], int]:
    """``({word: vector}, dim)`` for the entries of ``words`` found in the file at ``path``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--embeddings: file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    found: dict[str, np.ndarray] = {}
    dim = n = 0
    with opener(path, "rt", encoding=encoding, errors="strict") as f:
        try:
            for n, line in enumerate(f, 1):
                parts = line.rstrip("\n").rstrip(" ").split(" ")
                if n == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                    dim = int(parts[1])  # word2vec header
                    continue
                if len(parts) < 2:
                    if not line.strip():
                        continue
                    raise UserError(f"--embeddings: {path}, line {n}: expected a word and numbers")
                if not dim:
                    dim = len(parts) - 1
                if len(parts) - 1 != dim:
                    raise UserError(
                        f"--embeddings: {path}, line {n}: {len(parts) - 1} numbers, expected {dim}"
                    )
                if parts[0] in words and parts[0] not in found:
                    try:
                        found[parts[0]] = np.asarray(parts[1:], dtype=np.float32)
                    except ValueError:
                        raise UserError(
                            f"--embeddings: {path}, line {n}: not a number in the vector of "
                            f"{parts[0]!r}"
                        ) from None
        except UnicodeDecodeError as e:
            raise UserError(
                f"--embeddings: {path}, line {n + 1}: not valid {encoding} ({e.reason})"
            ) from None
    if not dim:
        raise UserError(f"--embeddings: {path} holds no vectors")
    return found, dim
