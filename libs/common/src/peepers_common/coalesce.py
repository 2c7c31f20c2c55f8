"""Coalesce concurrent calls into one batched call per event-loop turn.

A busy service handles many requests at once, and each used to send its own Redis command:
redis-py then spends more CPU packing commands and parsing replies than the request's own
logic costs. A `Coalescer` gathers what the concurrent callers submit during one turn of
the event loop and hands the whole list to one ``flush`` (one ``MGET``, one script call),
so the per-request cost is a list append and a future. Nobody waits for a batch to fill:
the flush runs on the next turn, so a lone caller pays no added latency.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["Coalescer"]

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    """``await coalescer.submit(item)``: one ``flush(items)`` per turn, results in order.

    ``flush`` returns one result per item. If it raises (or outlives ``timeout_s``), every
    caller of that batch gets the exception. A caller that is cancelled only loses its
    own result. At most ``max_batch`` items go to one flush; more start another.
    """

    def __init__(
        self,
        flush: Callable[[list[T]], Awaitable[Sequence[R]]],
        *,
        timeout_s: float | None = None,
        max_batch: int = 512,
    ) -> None:
        self._flush_items = flush
        self._timeout_s = timeout_s
        self._max_batch = max_batch
        self._items: list[T] = []
        self._futures: list[asyncio.Future[R]] = []
        # The flush task of this turn until its first step runs; None when none is due.
        self._scheduled_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inflight: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        loop = self._loop
        if loop is None or self._scheduled_task is None:
            # Else the loop of this turn's flush: asyncio.get_running_loop() makes a getpid
            # system call on Python 3.11, so once per batch, not once per call.
            loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._items.append(item)
        self._futures.append(future)
        if self._scheduled_task is None:
            # The task's first step runs on the next turn, after every call of this one
            # has been added: the batch starts a turn sooner than a callback that would
            # then create the task.
            task = self._scheduled_task = loop.create_task(self._flush_turn())
            task.add_done_callback(self._unscheduled)
            self._track(task)
        return await future

    def _track(self, task: asyncio.Task[None]) -> None:
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    def _unscheduled(self, task: asyncio.Task[None]) -> None:
        """Fail the waiting batch when its flush task was cancelled before it ever started.

        A task cancelled before its first step (at shutdown, say) never runs `_flush_turn`,
        so nothing would take the batch: its callers would wait forever, and so would
        everyone who joined it later, since no new flush would be scheduled.
        """
        if task is not self._scheduled_task or not task.cancelled():
            return  # it started: `_flush_turn` took the batch and answers its callers
        self._scheduled_task = None
        futures = self._futures
        self._items, self._futures = [], []
        for future in futures:
            future.cancel()

    async def _flush_turn(self) -> None:
        self._scheduled_task = None
        items, futures = self._items, self._futures
        self._items, self._futures = [], []
        size = self._max_batch
        for start in range(size, len(items), size):  # beyond the first batch: their own
            self._track(
                asyncio.create_task(
                    self._run(items[start : start + size], futures[start : start + size])
                )
            )
        await self._run(items[:size], futures[:size])

    async def _run(self, items: list[T], futures: list[asyncio.Future[R]]) -> None:
        try:
            async with asyncio.timeout(self._timeout_s):
                results = await self._flush_items(items)
            if len(results) != len(items):
                msg = f"flush returned {len(results)} results for {len(items)} items"
                raise RuntimeError(msg)
        except asyncio.CancelledError:
            for future in futures:
                future.cancel()
            raise
        except Exception as exc:  # handed to every caller of the batch
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
            return
        for future, result in zip(futures, results, strict=True):
            if not future.done():
                future.set_result(result)
