from __future__ import annotations

import redis.asyncio as aioredis

from peepers_catalog.adapters.redis_sync import RedisSyncCheckpoints
from peepers_catalog.ports import SyncState
from peepers_common.namespaces import Namespace
from tests.support import unique, wait_until

SELLER = 42


def checkpoints(redis: aioredis.Redis) -> RedisSyncCheckpoints:
    return RedisSyncCheckpoints(redis, Namespace("catalog", scope=unique("sync")))


async def test_a_checkpoint_round_trips_with_its_counts(catalog_redis: aioredis.Redis) -> None:
    store = checkpoints(catalog_redis)
    state = SyncState(SELLER, "run-1", "applying", total=3, next_index=2, counts={"created": 2})
    await store.save(state)
    assert await store.load(SELLER) == state
    assert await store.load(SELLER + 1) is None


async def test_scanned_ids_keep_their_order_and_reset(catalog_redis: aioredis.Redis) -> None:
    store = checkpoints(catalog_redis)
    await store.append_ids(SELLER, ["MLB1", "MLB2"])
    await store.append_ids(SELLER, ["MLB3"])
    assert await store.ids(SELLER, 1, 3) == ["MLB2", "MLB3"]
    await store.reset_ids(SELLER)
    assert await store.ids(SELLER, 0, 10) == []


async def test_one_owner_at_a_time_holds_a_sellers_sync(catalog_redis: aioredis.Redis) -> None:
    store = checkpoints(catalog_redis)
    assert await store.claim(SELLER, "worker-a", 30) is None
    assert await store.claim(SELLER, "worker-a", 30) is None  # extending is fine
    assert await store.claim(SELLER, "cli-b", 30) == "worker-a"
    await store.release(SELLER, "cli-b")  # not the holder: changes nothing
    assert await store.claim(SELLER, "cli-b", 30) == "worker-a"
    await store.release(SELLER, "worker-a")
    assert await store.claim(SELLER, "cli-b", 30) is None


async def test_a_claim_lapses_when_its_holder_stops_extending_it(
    catalog_redis: aioredis.Redis,
) -> None:
    store = checkpoints(catalog_redis)
    assert await store.claim(SELLER, "dead-worker", 0.05) is None

    async def lapsed() -> bool:
        return await store.claim(SELLER, "new-worker", 30) is None

    await wait_until(lapsed, timeout_s=5)
