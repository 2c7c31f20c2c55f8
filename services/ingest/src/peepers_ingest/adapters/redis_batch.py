"""Coalesce concurrent Redis commands into one pipeline per event-loop turn.

Every webhook costs ingest a dedup check, a rate-limit script and a dedup mark. Sent one
by one, redis-py spends more CPU on them than everything else a request does; requests
being handled together send their commands together, in one round trip, instead.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

__all__ = ["RedisBatcher"]


class RedisBatcher:
    """``await batcher.execute("SET", key, value)``: one non-transactional pipeline per turn."""

    def __init__(self, redis: aioredis.Redis, *, max_batch: int = 512) -> None:
        self._redis = redis
        self._max_batch = max_batch
        self._queue: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._scheduled = False
        self._inflight: set[asyncio.Task[None]] = set()

    async def execute(self, *command: Any) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((command, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        while self._queue:
            batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _send(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for command, _ in batch:
            pipe.execute_command(*command)
        try:
            results = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError) as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
