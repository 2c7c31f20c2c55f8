"""Sales analytics in Redis, in generations so a rebuild never shows half a replay.

Keys (under ``orders:``)::

    analytics:generation                     the generation readers use (absent: "0")
    analytics:building                       the generation a rebuild fills, while it runs
    analytics:{gen}:counted                  set of counted transition ids
    analytics:{gen}:{seller}:days            zset of the seller's days (score: ordinal)
    analytics:{gen}:{seller}:{day}           hash of counters (amounts in cents)
    analytics:{gen}:{seller}:{day}:{kind}    zset of durations: member order id, score s

A transition is counted by one Lua script (``lua/count_transition.lua``): added to the
counted set and to its day's counters together, or not at all. The live agent counts into
the current generation and, while a rebuild runs, into the one being built too; the
rebuild replays the topic into the new generation, then makes it current.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Final, cast

import redis.asyncio as aioredis

from peepers_common.namespaces import Namespace, redis_errors
from peepers_orders.adapters.redis_store import lua
from peepers_orders.analytics import Counted
from peepers_orders.ports import DayFigures

_DURATIONS: Final = ("paid_to_shipped", "shipped_to_delivered")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisAnalytics:
    """`AnalyticsStore` over Redis.

    ``generation`` pins one (a rebuild's); None follows the current one, and a running
    rebuild's too.
    """

    def __init__(
        self, redis: aioredis.Redis, namespace: Namespace, *, generation: str | None = None
    ) -> None:
        self._redis = redis
        self._ns = namespace
        self._pinned = generation
        self._count = redis.register_script(lua("count_transition.lua"))

    def pinned(self, generation: str) -> RedisAnalytics:
        """The same store, writing and reading ``generation`` only (a rebuild's)."""
        return RedisAnalytics(self._redis, self._ns, generation=generation)

    async def _generations(self) -> list[str]:
        if self._pinned is not None:
            return [self._pinned]
        with redis_errors("reading the analytics generation"):
            current, building = await self._redis.mget(
                [self._ns.key("analytics", "generation"), self._ns.key("analytics", "building")]
            )
        found = [_text(current) if current else "0"]
        if building and _text(building) not in found:
            found.append(_text(building))
        return found

    async def _current(self) -> str:
        if self._pinned is not None:
            return self._pinned
        return (await self._generations())[0]

    async def count(self, counted: Counted) -> bool:
        """Count into every live generation; True when the current one had not counted it."""
        results = [await self._count_in(gen, counted) for gen in await self._generations()]
        return results[0]

    async def _count_in(self, gen: str, counted: Counted) -> bool:
        day = counted.day.isoformat()
        base = self._ns.key("analytics", gen, counted.seller_id)
        kind, member, seconds = counted.duration or (_DURATIONS[0], 0, 0.0)
        pairs = [str(part) for name, value in counted.counters.items() for part in (name, value)]
        with redis_errors("counting a transition"):
            done = await self._count(
                keys=[
                    self._ns.key("analytics", gen, "counted"),
                    f"{base}:{day}",
                    f"{base}:days",
                    f"{base}:{day}:{kind}",
                ],
                args=[
                    counted.transition_id,
                    day,
                    counted.day.toordinal(),
                    member if counted.duration else "",
                    seconds,
                    *pairs,
                ],
            )
        return bool(done)

    async def days(self, seller_id: int, first: date, last: date) -> list[DayFigures]:
        gen = await self._current()
        base = self._ns.key("analytics", gen, seller_id)
        with redis_errors("reading analytics"):
            days = cast(
                "list[bytes]",
                await self._redis.zrange(
                    f"{base}:days", first.toordinal(), last.toordinal(), byscore=True
                ),
            )
            async with self._redis.pipeline(transaction=False) as pipe:
                for raw_day in days:
                    day = _text(raw_day)
                    pipe.hgetall(f"{base}:{day}")  # type: ignore[unused-awaitable]
                    for kind in _DURATIONS:
                        pipe.zrange(  # type: ignore[unused-awaitable]
                            f"{base}:{day}:{kind}", 0, -1, withscores=True
                        )
                found = await pipe.execute()
        figures: list[DayFigures] = []
        step = 1 + len(_DURATIONS)
        for index, raw_day in enumerate(days):
            counters = {_text(k): int(v) for k, v in found[index * step].items()}
            durations = [
                tuple(float(score) for _member, score in found[index * step + 1 + i])
                for i in range(len(_DURATIONS))
            ]
            figures.append(_figures(date.fromisoformat(_text(raw_day)), counters, durations))
        return figures

    async def begin_rebuild(self, generation: str) -> None:
        with redis_errors("starting an analytics rebuild"):
            await self._redis.set(self._ns.key("analytics", "building"), generation)

    async def finish_rebuild(self, generation: str) -> None:
        """Make ``generation`` current.

        The old generation's keys stay, unread: deleting them would need a key scan, and
        they are small.
        """
        with redis_errors("finishing an analytics rebuild"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(  # type: ignore[unused-awaitable]
                    self._ns.key("analytics", "generation"), generation
                )
                pipe.delete(self._ns.key("analytics", "building"))  # type: ignore[unused-awaitable]
                await pipe.execute()


def _money(counters: dict[str, int], prefix: str) -> dict[str, Decimal]:
    return {
        name.removeprefix(prefix): Decimal(cents) / 100
        for name, cents in counters.items()
        if name.startswith(prefix)
    }


def _figures(
    day: date, counters: dict[str, int], durations: Sequence[tuple[float, ...]]
) -> DayFigures:
    return DayFigures(
        day=day,
        orders=counters.get("orders", 0),
        units=counters.get("units", 0),
        revenue=_money(counters, "revenue:"),
        cancellations=counters.get("cancellations", 0),
        refunds=counters.get("refunds", 0),
        paid_to_shipped_s=durations[0],
        shipped_to_delivered_s=durations[1],
    )
