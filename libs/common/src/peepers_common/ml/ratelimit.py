"""Outbound rate limiting shared by every replica, with its state in Redis.

The `limits` library's moving window guarantees at most N requests in ANY window of the
configured length, so ML's fixed windows (however they are aligned) never see more than N
from all our replicas together. Waiting happens before a request leaves.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Final

import redis.asyncio as aioredis
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.exceptions import RedisError

from peepers_common.errors import CacheUnavailable
from peepers_common.settings import MlApiSettings, MlLimit

KEY_PREFIX: Final = "ratelimit"
# A slot is taken here a little before ML counts the request: the event loop, the Redis
# round trip and the network add a delay that varies between requests, so two requests one
# window apart here can land in one window at ML (the bench saw 53 in one second under a
# 50/s limit). A one-second margin on every window absorbs that. ML's limits are
# minute-scale (FACTS.md 7.1), where it costs under 2%; a per-second limit N becomes N per
# 2 s, safe but slow; configure such limits in minutes where ML allows it.
_MARGIN_S: Final = 1


@dataclass(frozen=True)
class _Level:
    name: str
    item: RateLimitItem
    identity: tuple[str, ...]


def _item(limit: MlLimit) -> RateLimitItem:
    return RateLimitItemPerSecond(limit.amount, limit.per_s + _MARGIN_S)


class OutboundLimiter:
    """Waits until every applicable limit (app, seller, endpoint family) has room."""

    def __init__(
        self, redis: aioredis.Redis, settings: MlApiSettings, *, scope: str = "ml"
    ) -> None:
        """Limit over `redis`, a client the caller owns (logged in as the service's ACL user).

        `scope` separates limit sets: replicas of one app share one; tests use their own.
        """
        # The URI only names the driver: requests go through the caller's connection pool.
        storage = RedisStorage(
            "async+redis://",
            implementation="redispy",
            key_prefix=KEY_PREFIX,
            # limits types **options as scalars, but documents and accepts a pool here.
            connection_pool=redis.connection_pool,  # type: ignore[arg-type]
        )
        self._limiter = MovingWindowRateLimiter(storage)
        self._settings = settings
        self._scope = scope

    def _levels(self, family: str, seller_id: int | None) -> list[_Level]:
        app = str(self._settings.app_id)
        levels: list[_Level] = []
        family_limit = self._settings.family_limits.get(family)
        if family_limit is not None:
            levels.append(
                _Level("family", _item(family_limit), (self._scope, app, "family", family))
            )
        if self._settings.seller_limit is not None and seller_id is not None:
            levels.append(
                _Level(
                    "seller",
                    _item(self._settings.seller_limit),
                    (self._scope, app, "seller", str(seller_id)),
                )
            )
        if self._settings.app_limit is not None:
            levels.append(_Level("app", _item(self._settings.app_limit), (self._scope, app, "app")))
        return levels

    async def acquire(self, family: str, seller_id: int | None = None) -> float:
        """Take one request from every level, waiting as needed; returns the seconds waited."""
        waited = 0.0
        for level in self._levels(family, seller_id):
            waited += await self._take(level)
        return waited

    async def _take(self, level: _Level) -> float:
        start = time.monotonic()
        try:
            while not await self._limiter.hit(level.item, *level.identity):
                stats = await self._limiter.get_window_stats(level.item, *level.identity)
                # Jitter spreads replicas that wake for the same slot.
                delay = max(stats.reset_time - time.time(), 0.005) + random.uniform(0, 0.02)  # noqa: S311
                await asyncio.sleep(delay)
        except RedisError as exc:
            msg = f"the outbound rate limiter's Redis failed: {exc!r}"
            raise CacheUnavailable(msg) from exc
        return time.monotonic() - start
