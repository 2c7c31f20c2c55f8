"""Dedup marks in Redis: ``ingest:dedup:<notification id>``, set once the notification is safe."""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from peepers_common.namespaces import Namespace
from peepers_ingest import metrics
from peepers_ingest.adapters.redis_batch import RedisBatcher

__all__ = ["RedisDeduplicator"]

log = logging.getLogger(__name__)


class RedisDeduplicator:
    """`Deduplicator` on Redis.

    Redis is a cache: when it fails, ingest publishes again (a duplicate for idempotent
    consumers) rather than risk dropping a notification.
    """

    def __init__(
        self, redis: RedisBatcher, namespace: Namespace, *, ttl_s: int, timeout_s: float = 0.1
    ) -> None:
        self._redis = redis
        self._namespace = namespace
        self._ttl_s = ttl_s
        # A dead Redis must not eat ML's 500 ms (redis-py's own retries take seconds).
        self._timeout_s = timeout_s

    def key(self, notification_id: str) -> str:
        return self._namespace.key("dedup", notification_id)

    async def seen(self, notification_id: str) -> bool:
        try:
            async with asyncio.timeout(self._timeout_s):
                return bool(await self._redis.execute("EXISTS", self.key(notification_id)))
        except (RedisError, TimeoutError) as exc:
            metrics.DEDUP_ERRORS.inc()
            log.warning("dedup check failed, treating the notification as new: %r", exc)
            return False

    async def mark(self, notification_id: str) -> None:
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._redis.execute("SET", self.key(notification_id), b"1", "EX", self._ttl_s)
        except (RedisError, TimeoutError) as exc:
            metrics.DEDUP_ERRORS.inc()
            log.warning(
                "could not mark a notification as seen (a redelivery may repeat it): %r", exc
            )
