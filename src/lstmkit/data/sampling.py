"""Batches of a finite data set as a pure function of ``(seed, step)``.

The trainer asks a task for training batch number ``step``; for data read from files the batch
must not depend on what came before, so that a resumed run sees the same batches as one that
was never stopped and each data-parallel process can take its slice of the same global batch.
Both samplers here walk through the data in epochs, each a fresh permutation drawn from
``(seed, epoch)``, and compute where step ``k`` falls without replaying the earlier steps.

- :func:`epoch_batch` - fixed-size batches of example indices (classification data).
- :class:`BucketBatches` - batches grouped by length with a token budget (translation, speech):
  few padding positions, and a per-epoch shuffle of the batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np


def _rng(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng([seed & 0xFFFFFFFF, epoch, 0x5EED])


@lru_cache(maxsize=4)
def _permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    return _rng(seed, epoch).permutation(n)


def epoch_batch(n: int, step: int, batch_size: int, seed: int) -> np.ndarray:
    """Indices into a data set of ``n`` examples for global batch ``step``.

    Example ``j`` of the stream is ``permutation(seed, j // n)[j % n]``: every epoch visits each
    example once, in an order of its own, and a batch may straddle two epochs.
    """
    if n < 1:
        raise ValueError("epoch_batch: the data set is empty")
    start = step * batch_size
    out = np.empty(batch_size, dtype=np.int64)
    for i in range(batch_size):
        j = start + i
        out[i] = _permutation(n, seed, j // n)[j % n]
    return out


def rank_slice(indices: Sequence[int] | np.ndarray, rank: int, world: int) -> np.ndarray:
    """Process ``rank``'s contiguous share of a global batch (shares differ by at most one).

    A batch with fewer examples than processes (a long sentence alone under a token budget)
    gives each process one example, repeating some: every process of a data-parallel step must
    run forward and backward, and an empty share would fail.
    """
    indices = np.asarray(indices)
    if 0 < len(indices) < world:
        return indices[[rank % len(indices)]]
    bounds = np.linspace(0, len(indices), world + 1).round().astype(int)
    return indices[bounds[rank] : bounds[rank + 1]]


class BucketBatches:
    """Length-bucketed batches under a token budget, reshuffled each epoch.

    Each epoch, examples are shuffled, then sorted by length within pools of ``pool`` batches'
    worth of examples (so that similar lengths meet but the order still varies), then cut into
    batches whose padded size ``max_len * count`` stays within ``max_tokens`` (at least one
    example each). The batches of the epoch are shuffled again. :meth:`batch` returns the
    indices of global batch ``step``.
    """

    def __init__(self, lengths: Sequence[int], max_tokens: int, seed: int, pool: int = 50):
        if len(lengths) == 0:
            raise ValueError("BucketBatches: the data set is empty")
        if max_tokens < 1:
            raise ValueError(f"BucketBatches: max_tokens must be >= 1, got {max_tokens}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.max_tokens, self.seed, self.pool = max_tokens, seed, pool
        self._epochs: dict[int, list[np.ndarray]] = {}
        self._starts = [0]  # global step at which each computed epoch begins

    def epoch(self, epoch: int) -> list[np.ndarray]:
        """The batches of ``epoch`` in the order they are served."""
        if epoch not in self._epochs:
            rng = _rng(self.seed, epoch)
            order = rng.permutation(len(self.lengths))
            mean = max(1.0, float(self.lengths.mean()))
            pool_size = max(1, int(self.pool * self.max_tokens / mean))
            batches: list[np.ndarray] = []
            for p in range(0, len(order), pool_size):
                chunk = order[p : p + pool_size]
                chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
                batches += self._cut(chunk)
            self._epochs = {k: v for k, v in self._epochs.items() if k >= epoch - 1}
            self._epochs[epoch] = [batches[i] for i in rng.permutation(len(batches))]
        return self._epochs[epoch]

    def _cut(self, chunk: np.ndarray) -> list[np.ndarray]:
        out, start, longest = [], 0, 0
        for i, idx in enumerate(chunk):
            longest_with = max(longest, int(self.lengths[idx]))
            if i > start and longest_with * (i - start + 1) > self.max_tokens:
                out.append(chunk[start:i])
                start, longest_with = i, int(self.lengths[idx])
            longest = longest_with
        out.append(chunk[start:])
        return out

    def batch(self, step: int) -> np.ndarray:
        """Indices of global batch ``step`` (epochs follow each other without a gap)."""
        epoch = 0
        # walk epoch lengths; they vary slightly because batches are cut by tokens
        while True:
            if epoch + 1 >= len(self._starts):
                self._starts.append(self._starts[-1] + len(self.epoch(epoch)))
            if step < self._starts[epoch + 1]:
                return self.epoch(epoch)[step - self._starts[epoch]]
            epoch += 1
