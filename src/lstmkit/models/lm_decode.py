"""Using a trained :class:`~lstmkit.models.lm.LanguageModel`: score a token stream with the
state carried (:func:`stream_nll`) and sample a continuation token by token
(:func:`sample_tokens`, its options checked by :func:`check_sampling`)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from lstmkit.utils.errors import UserError


def stream_nll(
    model: nn.Module, ids: np.ndarray, streams: int, seq_len: int, device: torch.device
) -> tuple[float, int]:
    """Summed negative log-likelihood (nats) of ``ids[1:]`` given what precedes each token.

    The inputs ``ids[:-1]`` are cut into ``streams`` contiguous pieces, run side by side in
    chunks of ``seq_len`` with the state carried, so every token but the first of a piece sees
    its whole piece as context.
    """
    x_all, y_all = ids[:-1].astype(np.int64), ids[1:].astype(np.int64)
    n = len(x_all)
    streams = max(1, min(streams, n))
    bounds = np.linspace(0, n, streams + 1).round().astype(int)
    width = int(np.diff(bounds).max())
    x = np.zeros((streams, width), dtype=np.int64)
    y = np.full((streams, width), -100, dtype=np.int64)  # -100: cross_entropy's ignore_index
    for b in range(streams):
        piece = slice(bounds[b], bounds[b + 1])
        x[b, : piece.stop - piece.start] = x_all[piece]
        y[b, : piece.stop - piece.start] = y_all[piece]
    x_t, y_t = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    total, state = 0.0, None
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for s in range(0, width, seq_len):
                nll, state = model(x_t[:, s : s + seq_len], state, y_t[:, s : s + seq_len])
                total += float(nll.float().sum())
    finally:
        model.train(was_training)
    return total, n


def check_sampling(length: int, temperature: float, top_k: int) -> None:
    """The options of :func:`sample_tokens`, checked before anything is drawn."""
    for name, value in (("length", length), ("temperature", temperature), ("top-k", top_k)):
        if value < 0:
            raise UserError(f"--{name} must be >= 0, got {value}")


def sample_tokens(
    model: nn.Module,
    ids: list[int],
    length: int,
    temperature: float,
    top_k: int,
    seed: int | None,
    banned: Sequence[int],
    device: torch.device,
) -> Iterator[int]:
    """``length`` tokens drawn after ``ids``, yielded one by one. Logits are divided by
    ``temperature`` (0: always the most likely token) and cut to the ``top_k`` most likely (0:
    all); ``banned`` tokens are never drawn. The same ``seed`` gives the same tokens."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed if seed is not None else torch.seed())
    model.eval()
    banned_t = torch.tensor(list(banned), dtype=torch.long, device=device)
    with torch.no_grad():
        logits, state = model(torch.tensor([ids], device=device), None)
        for _ in range(length):
            last = logits[0, -1].float()
            last[banned_t[banned_t < last.numel()]] = -math.inf
            token = _sample(last, temperature, top_k, gen)
            yield token
            logits, state = model(torch.tensor([[token]], device=device), state)


def _sample(logits: Tensor, temperature: float, top_k: int, gen: torch.Generator) -> int:
    if temperature == 0:
        return int(logits.argmax())
    logits = logits / temperature
    if top_k:
        k = min(top_k, logits.numel())
        kth = torch.topk(logits, k).values[-1]
        logits = logits.masked_fill(logits < kth, -math.inf)
    probs = torch.softmax(logits, -1)
    return int(torch.multinomial(probs, 1, generator=gen))
