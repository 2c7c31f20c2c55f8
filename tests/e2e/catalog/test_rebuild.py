"""End to end: the catalog worker loses its Redis and rebuilds it alone.

The worker runs against a redis-server of the test's own (the shared one is never
flushed), converged with the sandbox; then that Redis is flushed while ML keeps
changing items. The worker must notice, resync the seller, mirror ML again, and announce
no item as ``item.created`` a second time (the re-read items are ``item.snapshot``).
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from peepers_common.events import ItemCreated, ItemSnapshotted
from peepers_common.settings import KafkaSettings
from tests.e2e.catalog.harness import deployment
from tests.integration.catalog.worker import ready_worker
from tests.support import private_redis, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

log = logging.getLogger(__name__)

ITEMS = 120
RATE = 20.0
REBUILDS_DONE = 'peepers_catalog_rebuild_finished_total{outcome="done"}'


async def test_a_flushed_cache_is_noticed_and_rebuilt_without_announcing_any_item_twice(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    async with private_redis(tmp_path) as url:
        redis = aioredis.Redis.from_url(url)
        env = {
            "CATALOG_REDIS__URL": url,
            "CATALOG_REBUILD__CHECK_EVERY_S": "1",
            # The flush loses the limiter's budget: the worker then waits out a full
            # counted window (docs/ml-client.md), 6.25 s on this limit, not 62 s.
            "CATALOG_ML__APP_LIMIT": '{"amount": 250, "per_s": 5}',
        }
        try:
            async with (
                deployment(kafka, redis, tmp_path, items=ITEMS, extra_env=env) as d,
                ready_worker(d.run),
            ):
                await d.connect()  # seller.connected: a full sync, each item created
                await d.start_activity(RATE)
                await d.wait_changes(20)
                before = await d.events()
                await redis.flushall()  # our own Redis: the catalog's cache is gone
                await d.wait_changes(60)  # ML keeps changing while it is lost
                await d.stop_activity()
                await d.wait_converged(timeout_s=60)

                async def rebuilt() -> bool:
                    return await d.run.metric(REBUILDS_DONE) >= 2

                await wait_until(rebuilt, timeout_s=30, every_s=0.2)
                noticed = await d.run.metric("peepers_catalog_rebuild_started_total")
                after = await d.events()
        finally:
            await redis.aclose()

    created = Counter(e.item_id for e in after if isinstance(e, ItemCreated))
    snapshots = {e.item_id for e in after if isinstance(e, ItemSnapshotted)}
    announced_before = {e.item_id for e in before if isinstance(e, ItemCreated)}
    log.info(
        "%d events before the flush, %d after; %d items re-read as snapshots",
        len(before),
        len(after),
        len(snapshots),
    )
    assert announced_before == set(d.items.item_ids())
    assert all(n == 1 for n in created.values()), "an item was announced created twice"
    assert snapshots == set(d.items.item_ids())  # the rebuild re-read every item
    assert noticed >= 2  # the new namespace at start, then the loss
