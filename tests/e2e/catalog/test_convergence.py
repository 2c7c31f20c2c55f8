"""End to end: one seller's items keep changing in ML (the sandbox); its notifier POSTs to a
real ingest, ingest produces to Kafka, and the catalog worker (``python -m peepers_catalog
worker``) turns the notifications into the Redis cache and ``peepers.catalog.v1``."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from peepers_catalog.app import ITEM_TOPICS
from peepers_common.kafka import AIOKafkaEventPublisher
from peepers_common.settings import KafkaSettings
from tests.e2e.catalog.harness import deployment
from tests.integration.catalog.worker import notify, ready_worker
from tests.integration.ingest.support import read_all

pytestmark = pytest.mark.e2e

log = logging.getLogger(__name__)

RATE = 40.0  # item changes per second in ML


async def test_after_a_burst_of_item_changes_the_cache_mirrors_ml_and_each_change_is_announced_once(
    kafka: KafkaSettings, catalog_redis: aioredis.Redis, tmp_path: Path
) -> None:
    async with (
        deployment(kafka, catalog_redis, tmp_path, items=100) as d,
        ready_worker(d.run),
    ):
        await d.connect()
        await d.start_activity(RATE)
        for changes in (40, 80, 120, 160):
            await d.wait_changes(changes)
            await d.new_item()  # later changes may pick it too
        await d.wait_changes(200)
        await d.stop_activity()
        await d.wait_converged()
        audit = await d.audit()

    log.info("%d item changes in ML; %s", d.items.changes(), audit)
    assert audit.problems == []
    assert audit.chain_breaks == []
    assert audit.same_id_duplicates == 0
    assert audit.distinct > len(d.items.item_ids()), "no change was announced"


async def test_redelivered_and_out_of_order_notifications_change_nothing(
    kafka: KafkaSettings,
    catalog_redis: aioredis.Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with (
        deployment(kafka, catalog_redis, tmp_path, items=60) as d,
        ready_worker(d.run),
    ):
        await d.connect()
        await d.start_activity(RATE)
        await d.wait_changes(80)
        await d.stop_activity()
        await d.wait_converged()
        await d.wait_consumed()
        published, cached = await d.published(), await d.cached()

        # ML redelivers: every notification the worker already applied comes again.
        delivered = await read_all(kafka, [d.run.topic(t) for t in ITEM_TOPICS])
        async with AIOKafkaEventPublisher(kafka) as publisher:
            for record in delivered:
                await publisher.publish(
                    record.topic,
                    key=record.key or b"",
                    value=record.value or b"",
                    headers=record.headers,
                )
        await d.wait_consumed()
        assert await d.published() == published
        assert await d.cached() == cached

        # Out of order: ML answers with a version older than the cached one (a lagging
        # replica), as if the notification of an earlier change arrived last.
        market = d.auth.sandbox.state.market
        item_id, older = d.items.an_older_version()
        current = market.item_json
        served_older: list[str] = []

        def lagging(wanted: str, *, owner: bool) -> bytes:
            if wanted == item_id and owner:
                served_older.append(wanted)
                return older
            return current(wanted, owner=owner)

        monkeypatch.setattr(market, "item_json", lagging)
        await notify(kafka, d.run, "items", f"/items/{item_id}")
        await d.wait_consumed()
        assert served_older, "the worker did not ask ML for the item"
        assert await d.published() == published
        assert await d.cached() == cached

    log.info("%d notifications redelivered; item %s served out of order", len(delivered), item_id)
    assert len(delivered) > 60
