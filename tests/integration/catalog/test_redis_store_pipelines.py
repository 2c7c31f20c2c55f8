"""The store's per-record calls made together go to Redis as pipelines, each keeping its
own answer; a Redis that lost its scripts (a restart) is served all the same."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal

import pytest
import redis.asyncio as aioredis

from peepers_catalog.adapters import RedisItemStore
from peepers_common.namespaces import Namespace
from peepers_devstack.child import bound
from tests.integration.catalog.conftest import MakeItem
from tests.integration.ingest.support import free_port
from tests.support import unique, wait_until

pytestmark = pytest.mark.integration


class TestConcurrentCalls:
    async def test_concurrent_writes_each_get_their_own_compare_and_set_answer(
        self, store: RedisItemStore, make_item: MakeItem
    ) -> None:
        items = [make_item(f"MLB{n}") for n in range(20)]
        assert all(await asyncio.gather(*(store.put(i, expected=None) for i in items)))
        newer = [make_item(f"MLB{n}", price=Decimal(n + 1), minutes=1) for n in range(20)]
        # Half against the version cached, half against a stale one: in one pipeline.
        answers = await asyncio.gather(
            *(
                store.put(
                    item, expected=None if n % 2 else item.last_updated - timedelta(minutes=1)
                )
                for n, item in enumerate(newer)
            )
        )
        assert answers == [n % 2 == 0 for n in range(20)]
        states = await asyncio.gather(*(store.cached(f"MLB{n}") for n in range(20)))
        for n, state in enumerate(states):
            assert state.snapshot == (newer[n] if answers[n] else items[n])

    async def test_outbox_clears_made_together_clear_only_their_own_events(
        self, store: RedisItemStore, make_item: MakeItem
    ) -> None:
        for n in range(5):
            await store.put(make_item(f"MLB{n}"), expected=None, pending=f"[{n}]".encode())
        await asyncio.gather(
            *(store.clear_pending(f"MLB{n}", b"[0]" if n == 0 else b"[other]") for n in range(5))
        )
        states = await asyncio.gather(*(store.cached(f"MLB{n}") for n in range(5)))
        assert [s.pending for s in states] == [None, b"[1]", b"[2]", b"[3]", b"[4]"]


@contextmanager
def redis_server(port: int) -> Iterator[None]:
    """A redis-server of this test's own, without persistence; stopped afterwards."""
    binary = shutil.which("redis-server")
    assert binary is not None, "redis-server is not installed"
    server = subprocess.Popen(  # noqa: S603
        bound([binary, "--port", str(port), "--save", "", "--appendonly", "no"]),
        stdout=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        server.terminate()
        server.wait()


@pytest.fixture
async def own_redis() -> AsyncIterator[aioredis.Redis]:
    port = free_port()
    with redis_server(port):
        client = aioredis.Redis(port=port)

        async def up() -> bool:
            try:
                return bool(await client.ping())
            except (OSError, aioredis.ConnectionError):
                return False

        try:
            await wait_until(up, timeout_s=10)
            yield client
        finally:
            await client.aclose()


async def test_a_redis_that_lost_its_scripts_still_takes_pipelined_writes(
    own_redis: aioredis.Redis, make_item: MakeItem
) -> None:
    store = RedisItemStore(own_redis, Namespace("catalog", scope=unique("catalog")))
    first = make_item("MLB1")
    assert await store.put(first, expected=None)
    await own_redis.script_flush()
    newer = make_item("MLB1", price=Decimal("99.00"), minutes=1)
    assert await store.put(newer, expected=first.last_updated, pending=b"[1]")
    await own_redis.script_flush()
    await store.clear_pending("MLB1", b"[1]")
    state = await store.cached("MLB1")
    assert state.snapshot == newer
    assert state.pending is None
