"""Requests for fuzzing ``lstmkit serve``: valid ones and malformed ones (bad JSON, wrong
types, huge strings, unknown runs, fields and verbs), each marked; the serve tests send 200,
``bench/serve_load.py`` 10,000."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

GOOD_TEXTS = ["good fine movie", "bad awful film", "a movie", "the film was good"]


def requests_mix(
    rng: random.Random, n: int, *, max_text_chars: int, bad_share: float = 0.5
) -> Iterator[tuple[str, str, dict[str, Any], bool]]:
    """``n`` requests ``(method, path, httpx keyword arguments, malformed)`` against a server
    of the fixture runs ``sentiment`` and ``lm``; about ``bad_share`` of them malformed."""
    for _ in range(n):
        if rng.random() >= bad_share:
            k = rng.randrange(4)
            if k == 0:
                texts = rng.sample(GOOD_TEXTS, rng.randint(1, 3))
                yield "POST", "/v1/sentiment/predict", {"json": {"texts": texts}}, False
            elif k == 1:
                yield "POST", "/v1/lm/predict", {"json": {"texts": ["the cat sat"]}}, False
            elif k == 2:
                yield (
                    "POST",
                    "/v1/sentiment/inspect",
                    {"json": {"text": rng.choice(GOOD_TEXTS)}},
                    False,
                )
            else:
                yield "GET", "/v1/runs", {}, False
            continue
        yield (*_malformed(rng, max_text_chars), True)


def _malformed(rng: random.Random, limit: int) -> tuple[str, str, dict[str, Any]]:
    k = rng.randrange(12)
    post = "/v1/sentiment/predict"
    raw = lambda b: {"content": b, "headers": {"content-type": "application/json"}}  # noqa: E731
    if k == 0:
        cut = json.dumps({"texts": GOOD_TEXTS})
        return "POST", post, raw(cut[: rng.randrange(1, len(cut) - 1)].encode())
    if k == 1:
        return "POST", post, raw(bytes(rng.randrange(256) for _ in range(rng.randint(1, 64))))
    if k == 2:
        bad = rng.choice([None, 3, 2.5, True, {"a": 1}, [[1]], [None], "text"])
        return "POST", post, {"json": {"texts": bad}}
    if k == 3:
        return "POST", post, {"json": {"texts": ["x" * (limit + rng.randint(1, 5000))]}}
    if k == 4:
        return "POST", f"/v1/no-such-run-{rng.randrange(100)}/predict", {"json": {"texts": ["a"]}}
    if k == 5:
        return "POST", "/v1/sentiment/generate", {"json": {"prompt": "a"}}
    if k == 6:
        return (
            "POST",
            "/v1/lm/generate",
            {"json": {"prompt": "a", "length": rng.choice([-1, 10**9, "x"])}},
        )
    if k == 7:
        return "POST", "/v1/sentiment/inspect", {"json": {"text": rng.choice([None, 1, [], ""])}}
    if k == 8:
        return "POST", post, {"json": {"texts": []}}
    if k == 9:
        return "POST", post, {"json": rng.choice([[], "x", 1, None])}
    if k == 10:
        return "GET", post, {}  # the wrong method
    return (
        "POST",
        "/v1/lm/generate",
        {"json": {"prompt": "a", "temperature": rng.choice([0, -1, 1e9])}},
    )
