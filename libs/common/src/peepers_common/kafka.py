"""Kafka: the `EventPublisher` port and its aiokafka adapter, and reading a topic's records.

The adapter is an idempotent producer with ``acks=all``: a record is acknowledged only once
every in-sync replica has it, and retries never duplicate it within a producer session.
`end_offsets` and `read_to_end` serve operator tools (the DLQ tool, the dev stack) and tests.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner, murmur2

from peepers_common.errors import InfrastructureError, PublishError
from peepers_common.lifecycle import AsyncResource
from peepers_common.settings import KafkaSettings

Headers = Sequence[tuple[str, bytes]]


@dataclass(frozen=True)
class Published:
    topic: str
    partition: int
    offset: int


class EventPublisher(Protocol):
    async def publish(
        self, topic: str, *, key: bytes, value: bytes, headers: Headers = ()
    ) -> Published:
        """Send one record and return once Kafka acknowledged it.

        Raises:
            PublishError: Kafka did not acknowledge it.
        """
        ...


# aiokafka's murmur2 is pure Python (~5 us a key); keys repeat (one per resource), so
# each is hashed once. Same hash as Java's default partitioner: same partition.
_murmur2 = functools.lru_cache(maxsize=65_536)(murmur2)


def _partition(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    if key is None:
        return int(DefaultPartitioner()(key, all_partitions, available))
    return all_partitions[(int(_murmur2(key)) & 0x7FFFFFFF) % len(all_partitions)]


class AIOKafkaEventPublisher(AsyncResource):
    """`EventPublisher` over aiokafka. Use as ``async with`` or call start()/aclose()."""

    def __init__(self, settings: KafkaSettings, *, linger_ms: int = 2) -> None:
        self._settings = settings
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers,
            client_id=settings.client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=linger_ms,
            request_timeout_ms=settings.request_timeout_ms,
            partitioner=_partition,
        )
        self._started = False
        self._closed = False

    async def start(self) -> None:
        try:
            await self._producer.start()
        except KafkaError as exc:
            await self._producer.stop()
            msg = f"cannot connect to Kafka at {self._settings.bootstrap_servers}: {exc!r}"
            raise PublishError(msg) from exc
        self._started = True

    async def publish(
        self, topic: str, *, key: bytes, value: bytes, headers: Headers = ()
    ) -> Published:
        if not self._started or self._closed:
            msg = "the Kafka publisher is not started (or already closed)"
            raise PublishError(msg)
        try:
            meta = await self._producer.send_and_wait(
                topic, value=value, key=key, headers=list(headers)
            )
        except KafkaError as exc:
            msg = f"Kafka did not acknowledge a record for {topic}: {exc!r}"
            raise PublishError(msg) from exc
        return Published(meta.topic, meta.partition, meta.offset)

    async def aclose(self) -> None:
        """Flush what is in flight, then stop. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._started:
            await self._producer.flush()
        await self._producer.stop()


async def end_offsets(settings: KafkaSettings, topics: Sequence[str]) -> dict[TopicPartition, int]:
    """The current end offset of every partition of ``topics``.

    Raises:
        InfrastructureError: a topic does not exist, or Kafka did not answer.
    """
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
        await admin.start()
        try:
            described = await admin.describe_topics(list(topics))
        finally:
            await admin.close()
        partitions = []
        for topic in described:
            found = [TopicPartition(topic["topic"], p["partition"]) for p in topic["partitions"]]
            if topic.get("error_code") or not found:
                msg = f"topic {topic['topic']} does not exist (run peepers-topics ensure)"
                raise InfrastructureError(msg)
            partitions += found
        reader = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
        await reader.start()
        try:
            ends: dict[TopicPartition, int] = await reader.end_offsets(partitions)
        finally:
            await reader.stop()
    except KafkaError as exc:
        msg = f"cannot read the ends of {list(topics)}: {exc!r}"
        raise InfrastructureError(msg) from exc
    return ends


async def read_to_end(
    settings: KafkaSettings, topics: Sequence[str], *, timeout_s: float = 30.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record now in ``topics``, from the start up to their current end offsets.

    In order within each partition; up to the ends, not up to a count, so a record that
    should not be there shows.

    Raises:
        InfrastructureError: a topic does not exist, or the records did not arrive in time.
    """
    ends = await end_offsets(settings, topics)
    remaining = {tp for tp, end in ends.items() if end > 0}
    records: list[ConsumerRecord[bytes, bytes]] = []
    reader = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False
    )
    try:
        await reader.start()
        reader.assign(list(ends))
        await reader.seek_to_beginning(*ends)
        async with asyncio.timeout(timeout_s):
            while remaining:
                batch = await reader.getmany(*remaining, timeout_ms=500)
                for tp, got in batch.items():
                    records.extend(got)
                    if got and got[-1].offset + 1 >= ends[tp]:
                        remaining.discard(tp)
    except KafkaError as exc:
        msg = f"cannot read {list(topics)}: {exc!r}"
        raise InfrastructureError(msg) from exc
    except TimeoutError:
        msg = f"the records of {list(topics)} did not arrive within {timeout_s} s"
        raise InfrastructureError(msg) from None
    finally:
        await reader.stop()
    return records
