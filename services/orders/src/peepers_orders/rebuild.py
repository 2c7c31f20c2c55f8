"""A lost cache rebuilds itself: sellers from their topic, orders from ML, analytics by replay.

Redis holds mirrors only (ARCHITECTURE.md): orders, indexes and analytics may be lost at
any time (a restart without persistence, ``FLUSHALL``, a new node). The worker's
`peepers_common.rebuild.CacheGuard` keeps the epoch marker ``orders:epoch``; when it is
gone, or not ready (a rebuild that failed or was cut short, or an epoch a handler began,
`RedisSellerDirectory.epoch_started_at`), it calls `rebuild_orders`:

1. reads ``peepers.sellers.v1`` from its start: who is connected, and since when (the
   first connection decides which orders are history);
2. (phase two: the worker takes records meanwhile) backfills each connected seller's
   orders (`backfill.backfill`, the same mapping as webhooks; first-seen orders are
   snapshots, since they predate the new epoch, so nothing is mailed or announced as new
   again);
3. replays ``peepers.orders.v1`` into a new analytics generation (`replay_analytics`).

Meanwhile ``/readyz`` says ``"cache": "rebuilding"`` (it stays 200: a partial answer
beats no answer from every replica at once) and ``peepers_orders_rebuild_running`` is 1.
A failed rebuild is retried, one cut short is taken over (run id ``rebuild-<epoch>``:
backfills resume from their checkpoints). The mail ledger is not in this list: it is
Peepers-owned state, restored from its changelog (`peepers_common.changelog`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from peepers_common.events import SELLER_EVENT
from peepers_common.kafka import batches_to, end_offsets
from peepers_common.rebuild import SELLER_GONE, Resync
from peepers_common.settings import KafkaSettings
from peepers_orders import analytics
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


@dataclass(frozen=True)
class OrdersRebuild:
    """What a rebuild of the orders cache needs (`rebuild`)."""

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


async def rebuild_orders(epoch: str, deps: OrdersRebuild) -> Resync:
    """Phase one (who is connected, and since when); returns phase two (module doc)."""
    sellers = await connected_sellers(deps.kafka, deps.sellers_topic)
    log.info("a new orders cache (epoch %s): rebuilding %d sellers", epoch, len(sellers))
    for seller_id, facts in sellers.items():
        await deps.sellers.connected(seller_id, facts.first_connected)

    async def resync() -> None:
        # A seller's backfill done since this cache began (a connection's, meanwhile)
        # covers the rebuild's; one running now makes this attempt retry (BackfillBusy).
        began = await deps.sellers.epoch_started_at()
        for seller_id in sellers:
            try:
                await backfill(
                    seller_id,
                    deps.orders,
                    deps.checkpoints,
                    options=BackfillOptions(
                        days=deps.backfill_days, run_id=f"rebuild-{epoch}", not_before=began
                    ),
                )
            except SELLER_GONE as exc:
                log.error("rebuild: seller %d cannot be read, skipped: %r", seller_id, exc)
        generation = uuid.uuid4().hex[:12]
        await replay_analytics(
            deps.kafka,
            deps.orders_topic,
            deps.analytics,
            deps.new_generation(generation),
            generation,
            deps.zone,
        )

    return resync
