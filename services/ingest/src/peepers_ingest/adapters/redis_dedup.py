"""Dedup marks in Redis: ``ingest:dedup:<notification id>``, set once the notification is safe.

The checks of concurrent requests go to Redis as one ``MGET`` per event-loop turn, and
their marks as one script call (`peepers_common.coalesce`): per request, a list append
instead of a command packed, sent and parsed.
"""

from __future__ import annotations

import logging
from typing import Final

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from peepers_common.coalesce import Coalescer
from peepers_common.namespaces import Namespace
from peepers_ingest import metrics

__all__ = ["RedisDeduplicator"]

log = logging.getLogger(__name__)

# KEYS: the marks to set; ARGV[1]: their time to live in seconds.
_MARK: Final = """
for _, key in ipairs(KEYS) do
  redis.call('SET', key, '1', 'EX', ARGV[1])
end
return #KEYS
"""


class RedisDeduplicator:
    """`Deduplicator` on Redis.

    Redis is a cache: when it fails, ingest publishes again (a duplicate for idempotent
    consumers) rather than risk dropping a notification. ``timeout_s`` keeps a dead Redis
    from eating ML's 500 ms (redis-py's own retries take seconds).
    """

    def __init__(
        self, redis: aioredis.Redis, namespace: Namespace, *, ttl_s: int, timeout_s: float = 0.1
    ) -> None:
        self._redis = redis
        self._prefix = namespace.key("dedup", "").encode()
        self._mark_script = redis.register_script(_MARK)
        self._checks: Coalescer[bytes, bool] = Coalescer(self._seen_batch, timeout_s=timeout_s)
        self._marks: Coalescer[bytes, None] = Coalescer(self._mark_batch, timeout_s=timeout_s)
        self._ttl_arg = str(ttl_s).encode()

    def key(self, notification_id: str) -> str:
        return self._key_bytes(notification_id).decode()

    def _key_bytes(self, notification_id: str) -> bytes:
        # Bytes: redis-py sends them as they are instead of encoding each argument.
        return self._prefix + notification_id.encode()

    async def seen(self, notification_id: str) -> bool:
        try:
            return await self._checks.submit(self._key_bytes(notification_id))
        except (RedisError, TimeoutError) as exc:
            metrics.DEDUP_ERRORS.inc()
            log.warning("dedup check failed, treating the notification as new: %r", exc)
            return False

    async def mark(self, notification_id: str) -> None:
        try:
            await self._marks.submit(self._key_bytes(notification_id))
        except (RedisError, TimeoutError) as exc:
            metrics.DEDUP_ERRORS.inc()
            log.warning(
                "could not mark a notification as seen (a redelivery may repeat it): %r", exc
            )

    async def _seen_batch(self, keys: list[bytes]) -> list[bool]:
        return [value is not None for value in await self._redis.mget(keys)]

    async def _mark_batch(self, keys: list[bytes]) -> list[None]:
        await self._mark_script(keys, [self._ttl_arg])
        return [None] * len(keys)
