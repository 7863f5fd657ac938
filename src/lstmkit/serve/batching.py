"""Dynamic micro-batching: concurrent requests to one model are gathered into one call.

A request's items join a queue; the worker takes the first waiting request, then keeps taking
requests for up to ``max_wait_ms`` (or until ``max_batch`` items are gathered), runs the model
once on all their items in its own thread (one per model, so torch calls on a model never
overlap and the event loop stays free), and hands each request its own slice of the results.
The queue is bounded (``max_queue`` items waiting): a request beyond it raises
:class:`Overloaded` at once, which the server answers 503 with ``Retry-After``, so memory stays
bounded under overload.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any


class Overloaded(Exception):
    """The queue is full: the request was not taken."""


@dataclass
class _Pending:
    items: Sequence[Any]
    future: asyncio.Future
    queued: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    """Gather the items of concurrent :meth:`submit` calls into calls of ``fn(items) ->
    results`` (one result per item, in order), at most ``max_batch`` items each, waiting at
    most ``max_wait_ms`` for more after the first. ``max_batch=1`` serves each request alone
    (with several items in a request, they still go in one call).

    ``calls`` counts the model calls, ``items`` their inputs and ``batch_sizes`` the last
    10,000 calls' input counts (for tests and the
    load benchmark)."""

    def __init__(
        self,
        fn: Callable[[list[Any]], list[Any]],
        *,
        max_batch: int = 32,
        max_wait_ms: float = 5.0,
        max_queue: int = 1024,
        name: str = "model",
    ) -> None:
        self.fn = fn
        self.max_batch = max(1, max_batch)
        self.max_wait = max(0.0, max_wait_ms) / 1000
        self.max_queue = max_queue
        self.calls = 0
        self.items = 0  # inputs run, over all calls
        self.batch_sizes: collections.deque[int] = collections.deque(maxlen=10_000)
        self._queue: asyncio.Queue[_Pending] | None = None
        self._waiting = 0  # items queued, not yet taken by the worker
        self._worker: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._name = f"lstmkit-{name}"
        self._pool: ThreadPoolExecutor | None = None

    async def submit(self, items: Sequence[Any]) -> list[Any]:
        """The results for ``items``, computed in a batch with other requests' items."""
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done() or self._loop is not loop:
            # (re)started on this loop: a new app (or test client) may run its own loop
            self._queue, self._loop, self._waiting = asyncio.Queue(), loop, 0
            self._pool = self._pool or ThreadPoolExecutor(1, thread_name_prefix=self._name)
            self._worker = loop.create_task(self._run())
        if self._waiting + len(items) > self.max_queue:
            raise Overloaded(f"{self._waiting} items are waiting (--max-queue {self.max_queue})")
        fut = asyncio.get_running_loop().create_future()
        self._waiting += len(items)
        self._queue.put_nowait(_Pending(items, fut))
        return await fut

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in this model's thread: every use of a model (inspect's gate
        recording, generation, streams) runs there, one at a time, never beside a batch."""
        loop = asyncio.get_running_loop()
        self._pool = self._pool or ThreadPoolExecutor(1, thread_name_prefix=self._name)
        return await loop.run_in_executor(self._pool, fn, *args)

    def call_blocking(self, fn: Callable[..., Any], *args: Any) -> Any:
        """:meth:`call` from a thread that is not the event loop's (a streamed response)."""
        self._pool = self._pool or ThreadPoolExecutor(1, thread_name_prefix=self._name)
        return self._pool.submit(fn, *args).result()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        queue = self._queue
        while True:
            first = await queue.get()
            self._waiting -= len(first.items)
            batch, n = [first], len(first.items)
            deadline = loop.time() + self.max_wait
            while n < self.max_batch:
                if queue.empty():
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    try:
                        nxt = await asyncio.wait_for(queue.get(), left)
                    except TimeoutError:
                        break
                else:
                    nxt = queue.get_nowait()
                self._waiting -= len(nxt.items)
                batch.append(nxt)
                n += len(nxt.items)
            live = [p for p in batch if not p.future.done()]  # a cancelled request: skipped
            items = [x for p in live for x in p.items]
            if not items:
                continue
            try:
                results = await loop.run_in_executor(self._pool, self.fn, items)
                self.calls += 1
                self.batch_sizes.append(len(items))
                self.items += len(items)
            except Exception as e:  # noqa: BLE001 (each request gets its own answer)
                if len(live) == 1:
                    live[0].future.set_exception(e)
                    continue
                # one bad request must not fail the others gathered with it: each alone
                for p in live:
                    try:
                        own = await loop.run_in_executor(self._pool, self.fn, list(p.items))
                        self.calls += 1
                        self.batch_sizes.append(len(p.items))
                        self.items += len(p.items)
                    except Exception as own_error:  # noqa: BLE001
                        if not p.future.done():
                            p.future.set_exception(own_error)
                        continue
                    if not p.future.done():
                        p.future.set_result(own)
                continue
            k = 0
            for p in live:
                if not p.future.done():
                    p.future.set_result(results[k : k + len(p.items)])
                k += len(p.items)

    def close(self) -> None:
        """Stop the worker and its thread (a later :meth:`submit` starts them again)."""
        if self._worker is not None:
            self._worker.cancel()
            self._worker = None
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
