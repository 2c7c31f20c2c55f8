"""Helpers for tests (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from uuid import uuid4

from aiokafka import AIOKafkaConsumer, ConsumerRecord

from peepers_common.settings import KafkaSettings
from peepers_common.topic_admin import ensure_topics
from peepers_common.topics import TopicSpec


def unique(prefix: str = "test") -> str:
    """A name no other test uses: topics, groups, key scopes."""
    return f"{prefix}-{uuid4().hex[:8]}"


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], *, timeout_s: float = 10.0, every_s: float = 0.05
) -> None:
    """Poll until `predicate` is true; fail the test at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        if time.monotonic() > deadline:
            msg = f"condition not met within {timeout_s} s"
            raise AssertionError(msg)
        await asyncio.sleep(every_s)


async def create_topic(
    kafka: KafkaSettings, like: TopicSpec | None = None, partitions: int = 1
) -> str:
    """Create a uuid-named topic, shaped like a registry topic when `like` is given."""
    if like is None:
        spec = TopicSpec(unique("test-topic"), partitions, "test topic")
    else:
        spec = TopicSpec(
            f"{unique('test')}.{like.name}", like.partitions, like.description, like.config
        )
    await ensure_topics(kafka, [spec])
    return spec.name


async def consume(
    kafka: KafkaSettings,
    topic: str,
    count: int,
    *,
    group_id: str | None = None,
    timeout_s: float = 15.0,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read `count` records from the start of `topic` (committing when in a group)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=group_id,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        async with asyncio.timeout(timeout_s):
            while len(records) < count:
                batch = await consumer.getmany(timeout_ms=200, max_records=count - len(records))
                for partition_records in batch.values():
                    records.extend(partition_records)
            if group_id is not None:
                await consumer.commit()
    finally:
        await consumer.stop()
    return records
