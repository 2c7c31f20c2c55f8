"""The catalog worker as it runs in production: ``python -m peepers_catalog worker``, fed
through Kafka, reading ML (the sandbox) with tokens from the auth service's broker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from peepers_common.consuming import H_ERROR_KIND
from peepers_common.kafka import AIOKafkaEventPublisher
from peepers_common.settings import KafkaSettings
from peepers_common.topics import PEEPERS_SELLERS, dlq_topic, retry_topic
from tests.integration.auth.harness import SELLER, AuthStack, auth_stack, read_all
from tests.integration.catalog.worker import (
    WorkerRun,
    catalog_topics,
    connect_and_sync,
    events,
    item_store,
    notify,
    ready_worker,
    sandbox_items,
    worker_run,
)
from tests.support import wait_until


@pytest.fixture
async def deployed(
    kafka: KafkaSettings, tmp_path: Path
) -> AsyncIterator[tuple[AuthStack, WorkerRun]]:
    prefix = await catalog_topics(kafka)
    async with auth_stack(kafka, topic=prefix + PEEPERS_SELLERS) as auth:
        run = worker_run(auth, prefix, kafka, tmp_path / "catalog.log")
        async with ready_worker(run):
            yield auth, run


async def cached_price(run: WorkerRun, redis: aioredis.Redis, item_id: str) -> Decimal | None:
    item = await item_store(run, redis).get(item_id)
    return None if item is None else item.price


class TestCatalogWorker:
    async def test_a_connected_seller_is_synced_and_each_item_announced_once(
        self,
        deployed: tuple[AuthStack, WorkerRun],
        catalog_redis: aioredis.Redis,
        kafka: KafkaSettings,
    ) -> None:
        auth, run = deployed
        await connect_and_sync(auth, run, catalog_redis)
        items = sandbox_items(auth)
        for item_id, item in items.items():
            cached = await item_store(run, catalog_redis).get(item_id)
            assert cached is not None
            assert (cached.title, cached.status) == (item["title"], item["status"])
            assert cached.price == Decimal(str(item["price"]))

        async def announced() -> bool:
            return len(await events(kafka, run)) >= len(items)

        await wait_until(announced, timeout_s=10)
        published = await events(kafka, run)
        assert sorted(e["item_id"] for e in published) == sorted(items)
        assert {e["type"] for e in published} == {"item.created"}

    async def test_a_price_notification_updates_the_cache_and_announces_one_change(
        self,
        deployed: tuple[AuthStack, WorkerRun],
        catalog_redis: aioredis.Redis,
        kafka: KafkaSettings,
    ) -> None:
        auth, run = deployed
        await connect_and_sync(auth, run, catalog_redis)
        item_id = next(iter(sandbox_items(auth)))
        await auth.sandbox.admin.event("price_change", item_id=item_id, price=1234.5)
        for _ in range(2):  # ML redelivers: the second changes nothing
            await notify(kafka, run, "items_prices", f"/items/{item_id}/prices")

        async def repriced() -> bool:
            return await cached_price(run, catalog_redis, item_id) == Decimal("1234.5")

        await wait_until(repriced, timeout_s=15)
        changes = [e for e in await events(kafka, run) if e["type"] == "item.price_changed"]
        assert len(changes) == 1
        assert changes[0]["new_price"] in ("1234.5", 1234.5)
        # The kit's batch agent timed the batches that took the notifications.
        agent = 'agent="catalog.items",consumer="catalog"'  # as printed: labels sorted
        assert await run.metric(f"peepers_consumer_batch_records_sum{{{agent}}}") >= 2
        processed = f'peepers_consumer_batch_seconds_count{{{agent},phase="process"}}'
        assert await run.metric(processed) >= 1

    async def test_a_malformed_record_is_dead_lettered_and_the_partition_moves_on(
        self,
        deployed: tuple[AuthStack, WorkerRun],
        catalog_redis: aioredis.Redis,
        kafka: KafkaSettings,
    ) -> None:
        auth, run = deployed
        await connect_and_sync(auth, run, catalog_redis)
        item_id = next(iter(sandbox_items(auth)))
        async with AIOKafkaEventPublisher(kafka) as publisher:
            await publisher.publish(
                run.topic("ml.notifications.items"),
                key=f"{SELLER}:/items/{item_id}".encode(),
                value=b"\xffnot json",
            )
        await auth.sandbox.admin.event("price_change", item_id=item_id, price=77.0)
        await notify(kafka, run, "items", f"/items/{item_id}")

        async def repriced() -> bool:
            return await cached_price(run, catalog_redis, item_id) == Decimal("77.0")

        await wait_until(repriced, timeout_s=15)
        [dead] = await read_all(kafka, dlq_topic(run.topic("ml.notifications.items")))
        assert dict(dead.headers)[H_ERROR_KIND] == b"malformed"

    async def test_a_record_ml_fails_for_is_parked_and_applied_when_due(
        self,
        deployed: tuple[AuthStack, WorkerRun],
        catalog_redis: aioredis.Redis,
        kafka: KafkaSettings,
    ) -> None:
        auth, run = deployed
        await connect_and_sync(auth, run, catalog_redis)
        item_id = next(iter(sandbox_items(auth)))
        await auth.sandbox.admin.set_faults(
            error_rate=1.0, error_statuses=[503], families=["items"]
        )
        await auth.sandbox.admin.event("stock_change", item_id=item_id, available_quantity=42)
        await notify(kafka, run, "items", f"/items/{item_id}")
        parked_topic = retry_topic(run.topic("ml.notifications.items"))

        async def parked() -> bool:
            return len(await read_all(kafka, parked_topic)) == 1

        await wait_until(parked, timeout_s=20)
        await auth.sandbox.admin.clear_faults()

        async def restocked() -> bool:
            item = await item_store(run, catalog_redis).get(item_id)
            return item is not None and item.available_quantity == 42

        await wait_until(restocked, timeout_s=20)
        assert await read_all(kafka, dlq_topic(run.topic("ml.notifications.items"))) == []
