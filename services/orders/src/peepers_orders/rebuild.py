"""A lost cache rebuilds itself: sellers from their topic, orders from ML, analytics by replay.

Redis holds mirrors only (ARCHITECTURE.md): orders, indexes and analytics may be lost at
any time (a restart without persistence, ``FLUSHALL``, a new node). The ``epoch`` key
(`RedisSellerDirectory.begin_epoch`) is set when a cache begins, and marked once it is
rebuilt; a worker that finds it gone, or not marked (a rebuild that failed or was cut
short), knows the cache is new, and:

1. reads ``peepers.sellers.v1`` from its start: who is connected, and since when (the
   first connection decides which orders are history);
2. backfills each connected seller's orders (`backfill.backfill`, the same mapping as
   webhooks; first-seen orders are snapshots, since they predate the new epoch, so
   nothing is mailed or announced as new again);
3. replays ``peepers.orders.v1`` into a new analytics generation (`replay_analytics`).

Meanwhile ``/readyz`` says ``"cache": "rebuilding"`` (it stays 200: a partial answer
beats no answer from every replica at once) and ``peepers_orders_rebuild_running`` is 1.
The mail ledger is not in this list: it is Peepers-owned state, restored from its
changelog (`peepers_common.changelog`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from peepers_common.events import SELLER_EVENT
from peepers_common.kafka import batches_to, end_offsets
from peepers_common.settings import KafkaSettings
from peepers_orders import analytics, metrics
from peepers_orders.adapters.redis_analytics import RedisAnalytics
from peepers_orders.backfill import BackfillOptions, backfill
from peepers_orders.handlers import Orders
from peepers_orders.ports import BackfillCheckpoints, SellerDirectory

log = logging.getLogger(__name__)

_CONNECTED: Final = frozenset({"seller.connected", "seller.reconnected"})


@dataclass
class SellerFacts:
    first_connected: datetime
    connected: bool = True


async def connected_sellers(kafka: KafkaSettings, topic: str) -> dict[int, SellerFacts]:
    """Every seller whose latest event on ``topic`` leaves them connected, and since when."""
    found: dict[int, SellerFacts] = {}
    ends = await end_offsets(kafka, [topic])
    async with aclosing(batches_to(kafka, ends)) as batches:
        async for batch in batches:
            for record in batch:
                try:
                    event = SELLER_EVENT.validate_json(record.value or b"")
                except ValidationError:
                    continue  # a type newer than this code
                facts = found.get(event.seller_id)
                if event.type in _CONNECTED:
                    if facts is None:
                        found[event.seller_id] = SellerFacts(event.occurred_at)
                    else:
                        facts.connected = True
                elif facts is not None:
                    facts.connected = False
    return {seller: facts for seller, facts in found.items() if facts.connected}


async def replay_analytics(
    kafka: KafkaSettings,
    topic: str,
    live: RedisAnalytics,
    target: RedisAnalytics,
    generation: str,
    zone: ZoneInfo,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Replay ``topic`` from its start into ``generation``, then make it current.

    The live agent counts into it too while the replay runs, so nothing arriving
    meanwhile is missed, and the overlap counts once (ids). Returns the events replayed.
    """
    await live.begin_rebuild(generation)
    ends = await end_offsets(kafka, [topic])
    total, replayed = sum(ends.values()), 0
    async with aclosing(batches_to(kafka, ends)) as batches:
        async for batch in batches:
            for record in batch:
                try:
                    await analytics.on_order_event(record.value or b"", target, zone)
                except ValidationError:
                    continue  # the live agent dead-lettered it already
                replayed += 1
            if progress is not None:
                progress(replayed, total)
    await live.finish_rebuild(generation)
    return replayed


@dataclass
class CacheGuard:
    """Checks the cache's epoch every ``check_every_s``; rebuilds a new cache (module doc)."""

    orders: Orders
    sellers: SellerDirectory
    checkpoints: BackfillCheckpoints
    analytics: RedisAnalytics
    kafka: KafkaSettings
    sellers_topic: str
    orders_topic: str
    zone: ZoneInfo
    backfill_days: int
    new_generation: Callable[[str], RedisAnalytics]
    check_every_s: float = 10.0
    rebuilding: bool = False
    rebuilds: int = field(default=0)

    async def run(self) -> None:
        while True:
            try:
                started_at, rebuilt = await self.sellers.begin_epoch()
                if not rebuilt:
                    await self.rebuild(started_at)
            except Exception:  # logged; the next round tries again
                log.exception("the orders cache could not be checked or rebuilt")
            await asyncio.sleep(self.check_every_s)

    async def rebuild(self, epoch: datetime) -> None:
        self.rebuilding = True
        metrics.REBUILD_RUNNING.set(1)
        run_id = f"rebuild-{epoch.isoformat()}"
        try:
            sellers = await connected_sellers(self.kafka, self.sellers_topic)
            log.info("a new orders cache (epoch %s): rebuilding %d sellers", epoch, len(sellers))
            for seller_id, facts in sellers.items():
                await self.sellers.connected(seller_id, facts.first_connected)
                await backfill(
                    seller_id,
                    self.orders,
                    self.checkpoints,
                    options=BackfillOptions(days=self.backfill_days, run_id=run_id),
                )
            generation = uuid.uuid4().hex[:12]
            await replay_analytics(
                self.kafka,
                self.orders_topic,
                self.analytics,
                self.new_generation(generation),
                generation,
                self.zone,
            )
            await self.sellers.epoch_rebuilt()
            self.rebuilds += 1
            log.info("the orders cache of epoch %s is rebuilt", epoch)
        finally:
            self.rebuilding = False
            metrics.REBUILD_RUNNING.set(0)
