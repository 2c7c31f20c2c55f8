"""Dedup marks in Redis: ``ingest:dedup:<notification id>``, set once the notification is safe.

Ingest checks the notifications of one event-loop turn together (`peepers_ingest.handlers`):
one ``MGET`` for their checks, one script call for their marks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Final

import redis.asyncio as aioredis
from redis.exceptions import RedisError

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
        self._timeout_s = timeout_s
        self._ttl_arg = str(ttl_s).encode()

    def key(self, notification_id: str) -> str:
        return self._key_bytes(notification_id).decode()

    def _key_bytes(self, notification_id: str) -> bytes:
        # Bytes: redis-py sends them as they are instead of encoding each argument.
        return self._prefix + notification_id.encode()

    async def seen(self, notification_ids: Sequence[str]) -> list[bool]:
        keys = [self._key_bytes(notification_id) for notification_id in notification_ids]
        try:
            async with asyncio.timeout(self._timeout_s):
                values = await self._redis.mget(keys)
        except (RedisError, TimeoutError) as exc:
            metrics.DEDUP_ERRORS.inc(len(keys))
            log.warning("dedup check failed, treating %d notifications as new: %r", len(keys), exc)
            return [False] * len(keys)
        return [value is not None for value in values]

    async def mark(self, notification_ids: Sequence[str]) -> None:
        keys = [self._key_bytes(notification_id) for notification_id in notification_ids]
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._mark_script(keys, [self._ttl_arg])
        except (RedisError, TimeoutError) as exc:
            metrics.DEDUP_ERRORS.inc(len(keys))
            log.warning(
                "could not mark %d notifications as seen (a redelivery may repeat them): %r",
                len(keys),
                exc,
            )
