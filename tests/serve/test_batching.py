"""Dynamic micro-batching: concurrent requests share one model call and get what they would
alone; the queue is bounded; one bad request does not fail the others gathered with it."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from lstmkit.serve.batching import MicroBatcher, Overloaded


def test_two_concurrent_requests_are_one_model_call_with_the_answers_they_get_alone(app_of, served):
    app = app_of()
    batcher = served["sentiment"].batcher
    a, b = ["good fine movie"], ["bad awful film", "a movie"]

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            post = lambda texts: c.post("/v1/sentiment/predict", json={"texts": texts})  # noqa: E731
            alone = [(await post(a)).json(), (await post(b)).json()]
            calls = batcher.calls
            together = await asyncio.gather(post(a), post(b))
            return (
                alone,
                [r.json() for r in together],
                batcher.calls - calls,
                batcher.batch_sizes[-1],
            )

    # the served runs' batchers take this app's settings
    batcher.max_wait, batcher.max_batch = 0.3, 32
    try:
        alone, together, calls, size = asyncio.run(go())
    finally:
        batcher.max_wait, batcher.max_batch = 0.005, 32
    assert calls == 1 and size == 3  # one call on both requests' three texts
    for x, y in zip(alone, together, strict=True):
        assert [r["label"] for r in x["results"]] == [r["label"] for r in y["results"]]
        for rx, ry in zip(x["results"], y["results"], strict=True):
            for k, p in rx["probabilities"].items():
                assert ry["probabilities"][k] == pytest.approx(p, abs=1e-4)  # 4 places each


def run(coro):
    return asyncio.run(coro)


def test_batches_are_at_most_max_batch_and_answered_in_order():
    seen = []

    def fn(items):
        seen.append(list(items))
        return [x * 10 for x in items]

    async def go():
        b = MicroBatcher(fn, max_batch=4, max_wait_ms=50)
        out = await asyncio.gather(*(b.submit([k, k + 100]) for k in range(5)))
        b.close()
        return out

    out = run(go())
    assert out == [[10 * k, 10 * (k + 100)] for k in range(5)]
    assert all(len(s) <= 4 for s in seen) and sum(map(len, seen)) == 10
    assert len(seen) == 3  # 2+2, 2+2, 2: pairs never split


def test_max_batch_1_serves_each_request_alone():
    seen = []

    async def go():
        b = MicroBatcher(lambda xs: seen.append(len(xs)) or list(xs), max_batch=1, max_wait_ms=50)
        await asyncio.gather(*(b.submit([k]) for k in range(4)))
        b.close()

    run(go())
    assert seen == [1, 1, 1, 1]


def test_a_full_queue_refuses_at_once():
    gate = threading.Event()

    def slow(items):
        gate.wait(5)
        return list(items)

    async def go():
        b = MicroBatcher(slow, max_batch=1, max_wait_ms=0, max_queue=2)
        first = asyncio.ensure_future(b.submit([1]))
        await asyncio.sleep(0.05)  # taken by the worker: the queue is empty again
        queued = [asyncio.ensure_future(b.submit([k])) for k in (2, 3)]
        await asyncio.sleep(0)
        with pytest.raises(Overloaded, match="max-queue 2"):
            await b.submit([4])
        gate.set()
        out = [await first, *[await q for q in queued]]
        b.close()
        return out

    assert run(go()) == [[1], [2], [3]]


def test_one_bad_request_does_not_fail_the_others_gathered_with_it():
    def fn(items):
        if "bad" in items:
            raise ValueError("bad item")
        return [x.upper() for x in items]

    async def go():
        b = MicroBatcher(fn, max_batch=8, max_wait_ms=100)
        out = await asyncio.gather(
            b.submit(["a"]), b.submit(["bad"]), b.submit(["c"]), return_exceptions=True
        )
        b.close()
        return out, b.calls

    (a, bad, c), calls = run(go())
    assert a == ["A"] and c == ["C"] and isinstance(bad, ValueError)


def test_overload_over_http_is_503_with_retry_after(app_of, served, monkeypatch):
    gate = threading.Event()
    batcher = served["sentiment"].batcher
    real = batcher.fn

    def slow(items):
        gate.wait(5)
        return real(items)

    monkeypatch.setattr(batcher, "fn", slow)
    monkeypatch.setattr(batcher, "max_queue", 2)
    monkeypatch.setattr(batcher, "max_batch", 1)
    app = app_of()

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            post = lambda: c.post("/v1/sentiment/predict", json={"texts": ["good"]})  # noqa: E731
            tasks = [asyncio.ensure_future(post()) for _ in range(6)]
            await asyncio.sleep(0.3)
            gate.set()
            return await asyncio.gather(*tasks)

    rs = run(go())
    codes = sorted(r.status_code for r in rs)
    assert codes.count(200) >= 2 and codes.count(503) >= 1 and set(codes) == {200, 503}
    shed = next(r for r in rs if r.status_code == 503)
    assert shed.headers["retry-after"] == "1" and "max-queue" in shed.json()["error"]
    batcher.close()  # its worker ran on this test's loop


def test_concurrent_inspects_and_predicts_of_one_model_all_succeed_with_their_own_gates(app_of):
    """Gate recording hooks the model: two inspects (or an inspect beside a batch) at once
    recorded each other's calls or none (500: 'no gates recorded', found by the 10,000-request
    fuzz); every use of a model now runs in its own thread, one at a time."""
    app = app_of()

    async def go():
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as c:
            alone = (await c.post("/v1/sentiment/inspect", json={"text": "good fine movie"})).json()
            reqs = []
            for _ in range(20):
                reqs.append(c.post("/v1/sentiment/inspect", json={"text": "good fine movie"}))
                reqs.append(c.post("/v1/sentiment/predict", json={"texts": ["bad awful film a"]}))
                reqs.append(c.post("/v1/sentiment/inspect", json={"text": "a movie"}))
            return alone, await asyncio.gather(*reqs)

    alone, rs = run(go())
    assert [r.status_code for r in rs] == [200] * len(rs)
    for r in rs[::3]:
        assert r.json() == alone
