"""The changelog mechanism on the real Kafka and Redis: write, restore, notice a loss.

A lost view is simulated by deleting this test's own keys (never a FLUSHALL of the shared
Redis); tests/integration/auth flushes a Redis server of its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from peepers_common.changelog import (
    Changelog,
    ChangelogEntry,
    RedisViewMarker,
    ViewState,
)
from peepers_common.errors import InfrastructureError
from peepers_common.kafka import read_to_end
from peepers_common.namespaces import Namespace
from peepers_common.settings import KafkaSettings
from peepers_common.topic_admin import _admin, _current_configs
from peepers_common.topics import AUTH_SELLERS_CHANGELOG, topic_spec
from tests.support import create_topic, unique, wait_until


class KeyValueView:
    """The simplest view: one string key per entity; a tombstone deletes it."""

    def __init__(self, client: aioredis.Redis, namespace: Namespace) -> None:
        self.client = client
        self.namespace = namespace
        self.applied: list[ChangelogEntry] = []
        self.gate: asyncio.Event | None = None  # when set, apply waits for it
        self.entered = asyncio.Event()

    def key(self, entity: bytes) -> str:
        return self.namespace.key("entity", entity.decode())

    async def apply(self, entries: Sequence[ChangelogEntry]) -> None:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        async with self.client.pipeline(transaction=False) as pipe:
            for entry in entries:
                if entry.value is None:
                    pipe.delete(self.key(entry.key))  # type: ignore[unused-awaitable]
                else:
                    pipe.set(self.key(entry.key), entry.value)  # type: ignore[unused-awaitable]
            await pipe.execute()
        self.applied.extend(entries)

    async def snapshot(self, *entities: str) -> dict[str, bytes | str | None]:
        return {e: await self.client.get(self.key(e.encode())) for e in entities}

    async def lose(self, marker: RedisViewMarker, *entities: str) -> None:
        """What a FLUSHALL does to this view: every key of it gone, the marker too."""
        await self.client.delete(marker.epoch_key, *(self.key(e.encode()) for e in entities))


@pytest.fixture
async def topic(kafka: KafkaSettings) -> str:
    return await create_topic(kafka, like=topic_spec(AUTH_SELLERS_CHANGELOG))


@asynccontextmanager
async def changelog_of(
    kafka: KafkaSettings,
    topic: str,
    redis: aioredis.Redis,
    *,
    namespace: Namespace | None = None,
    check_every_s: float = 10.0,
    gated: bool = False,
) -> AsyncIterator[tuple[Changelog, KeyValueView, RedisViewMarker]]:
    namespace = namespace or Namespace("auth", scope=unique())
    view = KeyValueView(redis, namespace)
    view.gate = asyncio.Event() if gated else None
    marker = RedisViewMarker(redis, namespace, "things")
    async with Changelog(
        kafka, topic, view=view, marker=marker, check_every_s=check_every_s
    ) as changelog:
        yield changelog, view, marker


async def _ready(changelog: Changelog) -> bool:
    return changelog.ready


async def test_the_registry_declares_the_changelog_compacted(kafka: KafkaSettings) -> None:
    topic = await create_topic(kafka, like=topic_spec(AUTH_SELLERS_CHANGELOG))
    async with _admin(kafka, "a describe") as admin:
        config = (await _current_configs(admin, [topic]))[topic]
    assert config["cleanup.policy"] == "compact"


async def test_records_are_keyed_by_entity_and_a_delete_is_a_tombstone(
    kafka: KafkaSettings, topic: str, redis_admin: aioredis.Redis
) -> None:
    async with changelog_of(kafka, topic, redis_admin) as (changelog, _, _):
        first = await changelog.write("seller-1", b"v1")
        await changelog.write(b"seller-2", b"v1")
        await changelog.write("seller-1", None)
    records = await read_to_end(kafka, [topic])
    assert [(r.key, r.value) for r in records] == [
        (b"seller-1", b"v1"),
        (b"seller-2", b"v1"),
        (b"seller-1", None),
    ]
    assert first.topic == topic


async def test_a_new_view_is_restored_at_start_with_each_entitys_latest_record(
    kafka: KafkaSettings, topic: str, redis_admin: aioredis.Redis
) -> None:
    async with changelog_of(kafka, topic, redis_admin) as (writer, _, _):
        for key, value in [("a", b"1"), ("b", b"1"), ("a", b"2"), ("c", b"1"), ("c", None)]:
            await writer.write(key, value)
    async with changelog_of(kafka, topic, redis_admin) as (changelog, view, marker):
        await wait_until(lambda: _ready(changelog))
        assert await view.snapshot("a", "b", "c") == {"a": b"2", "b": b"1", "c": None}
        assert await marker.present()
        assert changelog.progress.records == 5


async def test_a_view_found_missing_is_restored_and_not_ready_meanwhile(
    kafka: KafkaSettings, topic: str, redis_admin: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="peepers_common.changelog")
    async with changelog_of(kafka, topic, redis_admin) as (changelog, view, marker):
        await wait_until(lambda: _ready(changelog))
        await changelog.write("a", b"1")
        await redis_admin.set(view.key(b"a"), b"1")  # what the service does after the write
        assert await changelog.verify() is False  # the view is there: nothing to do
        await view.lose(marker, "a")
        view.gate, view.entered = asyncio.Event(), asyncio.Event()
        restoring = asyncio.create_task(changelog.verify())
        await asyncio.wait_for(view.entered.wait(), 10)
        assert (changelog.ready, changelog.state) == (False, ViewState.RESTORING)
        waiter = asyncio.create_task(changelog.available())
        await asyncio.sleep(0)
        assert not waiter.done()  # callers wait for the restore
        view.gate.set()
        assert await asyncio.wait_for(restoring, 10) is True
        await asyncio.wait_for(waiter, 10)
        assert changelog.ready
        assert await view.snapshot("a") == {"a": b"1"}
    assert (
        REGISTRY.get_sample_value(
            "peepers_changelog_restores_total", {"topic": topic, "outcome": "restored"}
        )
        == 2
    )  # at start, and after the loss
    assert REGISTRY.get_sample_value("peepers_changelog_restoring", {"topic": topic}) == 0
    lines = [r.getMessage() for r in caplog.records if topic in r.getMessage()]
    assert sum("restoring the view" in line for line in lines) == 2
    assert any("view restored, 1 records" in line for line in lines)


async def test_the_periodic_check_notices_a_lost_view_by_itself(
    kafka: KafkaSettings, topic: str, redis_admin: aioredis.Redis
) -> None:
    async with changelog_of(kafka, topic, redis_admin, check_every_s=0.2) as (
        changelog,
        view,
        marker,
    ):
        await wait_until(lambda: _ready(changelog))
        await changelog.write("a", b"1")
        await view.lose(marker, "a")

        async def back() -> bool:
            return await view.snapshot("a") == {"a": b"1"} and await marker.present()

        await wait_until(back)


async def test_a_view_lost_again_during_its_restore_is_restored_again(
    kafka: KafkaSettings, topic: str, redis_admin: aioredis.Redis
) -> None:
    async with changelog_of(kafka, topic, redis_admin) as (writer, _, _):
        await writer.write("a", b"1")
    namespace = Namespace("auth", scope=unique())
    async with changelog_of(kafka, topic, redis_admin, namespace=namespace, gated=True) as (
        changelog,
        view,
        marker,
    ):
        await asyncio.wait_for(view.entered.wait(), 10)  # the start's restore, held
        # The view is lost mid-restore: its "restoring" note goes with it.
        await redis_admin.delete(namespace.key("changelog", "things", "restoring"))
        assert view.gate is not None
        view.gate.set()
        await wait_until(lambda: _ready(changelog))
        assert await view.snapshot("a") == {"a": b"1"}
        assert await marker.present()
        assert len(view.applied) == 2  # applied twice: the first pass did not count


async def test_a_failed_restore_leaves_the_service_unready_and_is_retried(
    kafka: KafkaSettings, redis_admin: aioredis.Redis
) -> None:
    missing = unique("no-such-topic")
    async with changelog_of(kafka, missing, redis_admin, check_every_s=0.2) as (changelog, _, _):
        await wait_until(lambda: _failed(changelog))
        assert not changelog.ready
        with pytest.raises(InfrastructureError, match="does not exist"):
            await changelog.verify()


async def _failed(changelog: Changelog) -> bool:
    return changelog.state is ViewState.FAILED


class StubbornView(KeyValueView):
    """A view whose apply ignores one cancellation and holds on for ``hold_s`` more, as a
    restore cancelled inside aiokafka's consumer stop can."""

    hold_s = 14.0

    async def apply(self, entries: Sequence[ChangelogEntry]) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(self.hold_s)
            raise


async def test_closing_does_not_wait_on_a_restore_that_will_not_stop(
    kafka: KafkaSettings, topic: str, redis_admin: aioredis.Redis
) -> None:
    async with changelog_of(kafka, topic, redis_admin) as (writer, _, _):
        await writer.write("a", b"1")
    namespace = Namespace("auth", scope=unique())
    marker = RedisViewMarker(redis_admin, namespace, "things")
    changelog = Changelog(kafka, topic, view=StubbornView(redis_admin, namespace), marker=marker)
    await changelog.start()

    async def restoring() -> bool:
        return changelog.state is ViewState.RESTORING

    await wait_until(restoring)
    stuck = changelog._restoring
    assert stuck is not None
    started = time.monotonic()
    await changelog.aclose()
    # Its own wait (5 s) and the cancel's (5 s), not the restore's 14 s more.
    assert time.monotonic() - started < StubbornView.hold_s
    await asyncio.wait({stuck})  # it ends by itself; nothing is left running
