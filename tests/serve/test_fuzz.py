"""A bounded fuzz of the JSON endpoints: 200 requests, a share of them malformed (bad JSON,
wrong types, huge strings, unknown runs and fields): no 5xx, each malformed one a 4xx with a
JSON error. (The 10,000-request version runs in bench/serve_load.py.)"""

from __future__ import annotations

import json
import random

from lstmkit.serve.fuzz import requests_mix


def test_200_requests_with_malformed_ones_give_no_5xx(client):
    rng = random.Random(20)
    n_bad = 0
    for method, path, kw, malformed in requests_mix(rng, 200, max_text_chars=10_000):
        r = client.request(method, path, **kw)
        assert r.status_code < 500, (path, kw, r.text)
        if malformed:
            n_bad += 1
            assert 400 <= r.status_code < 500, (path, kw, r.status_code)
            assert json.loads(r.text)["error"]
        else:
            assert r.status_code == 200, (path, kw, r.text)
    assert 60 <= n_bad <= 140
    assert client.get("/health").status_code == 200
