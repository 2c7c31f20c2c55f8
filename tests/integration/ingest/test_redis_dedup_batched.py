"""`RedisDeduplicator`: a batch of checks is one MGET, a batch of marks one script call.

Real Redis as ingest's ACL user, keys under a namespace scope of the test's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY
from redis.asyncio.client import MonitorCommandInfo
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from peepers_common.namespaces import Namespace, connect_redis
from peepers_ingest.adapters import RedisDeduplicator
from peepers_ingest.settings import Settings as IngestSettings
from tests.support import redis_commands_during, unique

TTL_S = 120


@pytest.fixture
async def ingest_redis() -> AsyncIterator[aioredis.Redis]:
    """Redis as ingest's ACL user (``~ingest:*``), as the service connects."""
    client = connect_redis(IngestSettings().redis)
    yield client
    await client.aclose()


@pytest.fixture
def namespace() -> Namespace:
    return Namespace("ingest", scope=unique("dedup"))


@pytest.fixture
def dedup(ingest_redis: aioredis.Redis, namespace: Namespace) -> RedisDeduplicator:
    return RedisDeduplicator(ingest_redis, namespace, ttl_s=TTL_S)


def ids(count: int, tag: str = "n") -> list[str]:
    return [f"{tag}-{i}" for i in range(count)]


async def mark_all(dedup: RedisDeduplicator, notification_ids: list[str]) -> None:
    async with asyncio.timeout(2):
        await dedup.mark(notification_ids)


async def seen_all(dedup: RedisDeduplicator, notification_ids: list[str]) -> list[bool]:
    async with asyncio.timeout(2):
        return await dedup.seen(notification_ids)


def dedup_errors() -> float:
    return REGISTRY.get_sample_value("peepers_ingest_dedup_errors_total") or 0.0


async def test_marked_ids_are_all_seen_and_unmarked_ids_are_not(
    dedup: RedisDeduplicator,
) -> None:
    marked, unmarked = ids(60, "marked"), ids(40, "unmarked")
    assert await seen_all(dedup, marked + unmarked) == [False] * 100
    await mark_all(dedup, marked)
    # Interleaved, so a mix-up of positions inside the batch would show.
    mixed = [x for pair in zip(marked, unmarked, strict=False) for x in pair] + marked[40:]
    expected = [i.startswith("marked") for i in mixed]
    assert await seen_all(dedup, mixed) == expected
    # Marking again (a redelivery) changes nothing.
    await mark_all(dedup, marked[:5] + marked[:5])
    assert await seen_all(dedup, marked[:5] + unmarked[:5]) == [True] * 5 + [False] * 5


async def test_every_mark_lives_under_the_namespace_with_the_ttl(
    dedup: RedisDeduplicator, namespace: Namespace, redis_admin: aioredis.Redis
) -> None:
    marked = ids(30)
    await mark_all(dedup, marked)
    for notification_id in marked:
        key = dedup.key(notification_id)
        assert key == f"{namespace.prefix}dedup:{notification_id}"
        ttl = await redis_admin.ttl(key)
        assert 0 < ttl <= TTL_S, (key, ttl)
    # Nothing outside the scope: not the unscoped key a forgotten namespace would write.
    assert await redis_admin.exists(*(f"ingest:dedup:{i}" for i in marked)) == 0


async def test_a_batch_of_checks_is_one_mget_and_a_batch_of_marks_one_script_call(
    dedup: RedisDeduplicator,
    namespace: Namespace,
    ingest_redis: aioredis.Redis,
    redis_admin: aioredis.Redis,
) -> None:
    marked = ids(25)
    await mark_all(dedup, ["warm-up"])  # loads the script, so the batch needs no retry
    marker = namespace.key("marker")

    def ours(commands: list[MonitorCommandInfo]) -> list[list[str]]:
        return [c["command"].split() for c in commands if namespace.prefix in c["command"]]

    _, during_marks = await redis_commands_during(
        redis_admin, ingest_redis, marker, lambda: mark_all(dedup, marked)
    )
    calls = [c for c in ours(during_marks) if c[0].upper() != "SET"]
    assert [c[0].upper() for c in calls] == ["EVALSHA"]
    assert calls[0][3:] == [dedup.key(i) for i in marked] + [str(TTL_S)]
    sets = [c for c in ours(during_marks) if c[0].upper() == "SET"]
    assert sorted(s[1] for s in sets) == sorted(dedup.key(i) for i in marked)
    assert all(s[2:] == ["1", "EX", str(TTL_S)] for s in sets)

    checked = marked + ids(5, "new")
    found, during_checks = await redis_commands_during(
        redis_admin, ingest_redis, marker, lambda: seen_all(dedup, checked)
    )
    assert found == [True] * 25 + [False] * 5
    assert ours(during_checks) == [["MGET", *(dedup.key(i) for i in checked)]]


def dead_redis(kind: str) -> aioredis.Redis:
    """A client pointed at a closed port: refused at once (no retries), or retrying past
    the deduplicator's timeout (redis-py's default retries take seconds)."""
    if kind == "refused":
        return aioredis.Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    return aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)


@pytest.mark.parametrize("kind", ["refused", "retrying"])
async def test_with_redis_down_checks_say_new_and_marks_do_not_raise_each_counted(
    kind: str,
) -> None:
    dead = dead_redis(kind)
    try:
        dedup = RedisDeduplicator(dead, Namespace("ingest", scope=unique("dead")), ttl_s=TTL_S)
        before = dedup_errors()
        async with asyncio.timeout(2):
            checks, _ = await asyncio.gather(dedup.seen(ids(7)), dedup.mark(ids(4)))
            assert checks == [False] * 7
            assert dedup_errors() - before == 11  # counted per notification
            assert await dedup.seen(["alone"]) == [False]
            await dedup.mark(["alone"])
        assert dedup_errors() - before == 13
    finally:
        await dead.aclose()
