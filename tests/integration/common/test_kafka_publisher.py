"""`AIOKafkaEventPublisher` against the real broker: batched publishing keeps its promises.

Records published concurrently are grouped by partition into whole record batches; each
caller must still get the offset of its own record, keys must keep their call order, and a
failure must reach exactly the callers whose records it concerns. Every test reads its
topic back (`read_to_end`, up to the end offsets, so a duplicate or a stray record shows).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from peepers_common.errors import PublishError
from peepers_common.kafka import AIOKafkaEventPublisher, Published, end_offsets, read_to_end
from peepers_common.settings import KafkaSettings
from peepers_common.topic_admin import ensure_topics
from peepers_common.topics import TopicSpec
from tests.support import create_topic, unique

KIB = 1024
# The broker's per-batch limit for the topics that hold large records, set explicitly so
# the tests do not depend on the broker's default (message.max.bytes, ~1 MiB).
MAX_MESSAGE_BYTES = 1024 * KIB


@dataclass(frozen=True)
class Sent:
    """One publish call: its place in the call order and its record."""

    seq: int
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def kafka_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2) picks for `key`."""
    every = list(range(partitions))
    return int(DefaultPartitioner()(key, every, every))


async def publish(publisher: AIOKafkaEventPublisher, topic: str, sent: Sent) -> Published:
    return await publisher.publish(topic, key=sent.key, value=sent.value, headers=sent.headers)


async def large_topic(kafka: KafkaSettings, partitions: int = 1) -> str:
    name = unique("test-topic")
    spec = TopicSpec(
        name, partitions, "large records", {"max.message.bytes": str(MAX_MESSAGE_BYTES)}
    )
    await ensure_topics(kafka, [spec])
    return name


async def assert_landed(
    kafka: KafkaSettings, topic: str, partitions: int, calls: Sequence[tuple[Sent, Published]]
) -> None:
    """Each call's `Published` points at its own record; nothing else is in the topic.

    Also: the partition is the one Kafka's default partitioner picks for the key, and the
    offsets of one key increase in call order.
    """
    assert len({sent.value for sent, _ in calls}) == len(calls), "values must be unique"
    records = await read_to_end(kafka, [topic])
    assert len(records) == len(calls), "records duplicated or missing"
    at = {(record.partition, record.offset): record for record in records}
    assert len({(p.partition, p.offset) for _, p in calls}) == len(calls)
    for sent, published in calls:
        assert published.topic == topic
        assert published.partition == kafka_partition(sent.key, partitions), sent
        record = at.get((published.partition, published.offset))
        assert record is not None, f"nothing at {published} for call {sent.seq}"
        assert (record.key, record.value) == (sent.key, sent.value), f"call {sent.seq}"
        assert list(record.headers) == sent.headers, f"call {sent.seq}"
    by_key: defaultdict[bytes, list[tuple[int, int]]] = defaultdict(list)
    for sent, published in calls:
        by_key[sent.key].append((sent.seq, published.offset))
    for key, seq_offsets in by_key.items():
        offsets = [offset for _, offset in sorted(seq_offsets)]
        assert offsets == sorted(offsets), f"{key!r} out of call order: {offsets}"
        assert len(set(offsets)) == len(offsets)


def calls_of(count: int, keys: Sequence[bytes], *, seed: int = 7) -> list[Sent]:
    """`count` records over `keys` (picked at random), with unique values and mixed headers."""
    rng = random.Random(seed)
    calls = []
    for seq in range(count):
        headers = [("ce_id", f"id-{seq}".encode())] if seq % 3 else []
        if seq % 5 == 0:
            headers.append(("empty", b""))
        calls.append(Sent(seq, rng.choice(keys), f"value-{seq}".encode(), headers))
    return calls


def spy(monkeypatch: pytest.MonkeyPatch, target: object, name: str) -> list[tuple[Any, ...]]:
    """Record the positional arguments of every call of the coroutine `target.name`."""
    seen: list[tuple[Any, ...]] = []
    real: Callable[..., Awaitable[Any]] = getattr(target, name)

    async def recorded(*args: Any, **kwargs: Any) -> Any:
        seen.append(args)
        return await real(*args, **kwargs)

    monkeypatch.setattr(target, name, recorded)
    return seen


KEYS = [f"{seller}:/items/MLB{seller * 7}".encode() for seller in range(40)]


async def test_concurrent_publishes_each_get_the_offset_of_their_own_record(
    kafka: KafkaSettings,
) -> None:
    topic = await create_topic(kafka, partitions=6)
    calls = calls_of(600, KEYS)
    async with AIOKafkaEventPublisher(kafka) as publisher:
        published = await asyncio.gather(*(publish(publisher, topic, sent) for sent in calls))
    assert {p.partition for p in published} == set(range(6))
    await assert_landed(kafka, topic, 6, list(zip(calls, published, strict=True)))


async def test_publishes_spread_over_many_rounds_keep_each_keys_order(
    kafka: KafkaSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = await create_topic(kafka, partitions=6)
    rng = random.Random(11)
    seq = itertools.count()
    results: list[tuple[Sent, Published]] = []

    def next_call() -> Sent:
        n = next(seq)
        return Sent(n, rng.choice(KEYS[:8]), f"value-{n}".encode(), [("n", str(n).encode())])

    async def call(publisher: AIOKafkaEventPublisher, sent: Sent) -> None:
        results.append((sent, await publish(publisher, topic, sent)))

    async with AIOKafkaEventPublisher(kafka) as publisher:
        rounds = spy(monkeypatch, publisher, "_enqueue")
        for wave in range(6):
            # One call alone, awaited: a round of its own.
            await call(publisher, next_call())
            # Bursts started over several turns while the earlier ones are being enqueued
            # or are in flight: each turn's calls join whatever round comes next. Tasks
            # start in creation order, so the call order is the order of `seq`.
            tasks = []
            for turn in range(6):
                tasks += [
                    asyncio.create_task(call(publisher, next_call()))
                    for _ in range(rng.randint(1, 25))
                ]
                await asyncio.sleep(0 if (wave + turn) % 2 else 0.002)
            await asyncio.gather(*tasks)
    assert len(rounds) >= 20, f"only {len(rounds)} rounds: the test did not interleave"
    await assert_landed(kafka, topic, 6, results)


async def test_a_round_larger_than_one_batch_arrives_whole_and_in_order(
    kafka: KafkaSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 40 x 30 KiB + 700 KiB is 1.9 MiB: more than a batch builder (and the topic) takes
    # in one batch (1 MiB), so the round must be split into several batches.
    topic = await large_topic(kafka)
    sizes = [30 * KIB] * 20 + [700 * KIB] + [30 * KIB] * 20
    calls = [
        Sent(i, KEYS[i % 3], f"{i:04d}".encode() * (size // 4), [("i", str(i).encode())])
        for i, size in enumerate(sizes)
    ]
    assert sum(len(sent.value) for sent in calls) > MAX_MESSAGE_BYTES
    async with AIOKafkaEventPublisher(kafka) as publisher:
        batches = spy(monkeypatch, publisher._producer, "send_batch")
        published = await asyncio.gather(*(publish(publisher, topic, sent) for sent in calls))
    assert [p.offset for p in published] == list(range(len(calls)))
    assert len(batches) >= 2, f"{len(batches)} batches for {len(calls)} records"
    await assert_landed(kafka, topic, 1, list(zip(calls, published, strict=True)))
    records = await read_to_end(kafka, [topic])
    assert [r.value for r in records] == [sent.value for sent in calls]


async def test_a_missing_topic_fails_its_publish_and_the_publisher_keeps_working(
    kafka: KafkaSettings,
) -> None:
    topic = await create_topic(kafka, partitions=2)
    missing = unique("test-missing")
    settings = kafka.model_copy(update={"request_timeout_ms": 1500})
    async with AIOKafkaEventPublisher(settings) as publisher:
        started = time.monotonic()
        async with asyncio.timeout(10):
            with pytest.raises(PublishError, match=missing):
                await publisher.publish(missing, key=b"k", value=b"lost")
        assert time.monotonic() - started < 5
        # In one round with a record for a good topic: only the missing topic's caller fails.
        async with asyncio.timeout(10):
            lost, kept = await asyncio.gather(
                publisher.publish(missing, key=b"k", value=b"lost again"),
                publisher.publish(topic, key=b"k", value=b"kept"),
                return_exceptions=True,
            )
        assert isinstance(lost, PublishError)
        assert isinstance(kept, Published)
        after = await publisher.publish(topic, key=b"k", value=b"after")
    records = await read_to_end(kafka, [topic])
    assert [(r.partition, r.offset, r.value) for r in records] == [
        (kept.partition, kept.offset, b"kept"),
        (after.partition, after.offset, b"after"),
    ]
    assert after.offset == kept.offset + 1


async def test_a_burst_to_a_missing_topic_fails_within_about_one_request_timeout(
    kafka: KafkaSettings,
) -> None:
    # A round asks for its unknown topics together: one timeout, not one per record.
    topic = await create_topic(kafka)
    missing = unique("test-missing")
    settings = kafka.model_copy(update={"request_timeout_ms": 1000})
    async with AIOKafkaEventPublisher(settings) as publisher:
        started = time.monotonic()
        async with asyncio.timeout(20):
            *lost, kept = await asyncio.gather(
                *(publisher.publish(missing, key=b"k%d" % i, value=b"lost") for i in range(4)),
                publisher.publish(topic, key=b"k", value=b"kept"),
                return_exceptions=True,
            )
        elapsed = time.monotonic() - started
    assert all(isinstance(error, PublishError) for error in lost)
    assert isinstance(kept, Published)
    assert elapsed < 2.5, f"the burst took {elapsed:.1f} s to fail"


async def test_aclose_delivers_the_publishes_in_flight_and_refuses_later_ones(
    kafka: KafkaSettings,
) -> None:
    topic = await create_topic(kafka, partitions=3)
    # Small records and 50 KiB ones (several batches per partition), so aclose() finds
    # the enqueuer busy and batches in flight.
    calls = [
        Sent(i, KEYS[i % 10], f"{i:05d}".encode() * (10 * KIB if i % 4 == 0 else 1))
        for i in range(200)
    ]
    publisher = AIOKafkaEventPublisher(kafka)
    await publisher.start()
    try:
        tasks = [asyncio.create_task(publish(publisher, topic, sent)) for sent in calls]
        await asyncio.sleep(0)  # every call has run up to waiting for its ack
        assert not any(task.done() for task in tasks)
        late = asyncio.create_task(publisher.publish(topic, key=b"late", value=b"late"))
        async with asyncio.timeout(15):
            await publisher.aclose()
            published = await asyncio.gather(*tasks)
            with pytest.raises(PublishError):
                await late
    finally:
        await publisher.aclose()
    await assert_landed(kafka, topic, 3, list(zip(calls, published, strict=True)))


async def test_publish_before_start_or_after_aclose_raises(kafka: KafkaSettings) -> None:
    topic = await create_topic(kafka)
    publisher = AIOKafkaEventPublisher(kafka)
    async with asyncio.timeout(5):
        with pytest.raises(PublishError):
            await publisher.publish(topic, key=b"k", value=b"too early")
    await publisher.start()
    try:
        sent = await publisher.publish(topic, key=b"k", value=b"ok")
    finally:
        await publisher.aclose()
    async with asyncio.timeout(5):
        with pytest.raises(PublishError):
            await publisher.publish(topic, key=b"k", value=b"too late")
    await publisher.aclose()  # twice is fine
    records = await read_to_end(kafka, [topic])
    assert [(r.offset, r.value) for r in records] == [(sent.offset, b"ok")]


@pytest.mark.parametrize("size", [2 * MAX_MESSAGE_BYTES, MAX_MESSAGE_BYTES - 40])
async def test_an_oversized_record_fails_alone_and_its_partition_keeps_working(
    kafka: KafkaSettings, size: int
) -> None:
    # Refused before it is sent: a record the broker refuses would spend an idempotence
    # sequence number and every later batch of the partition would fail as out of order.
    # Just over the limit (its batch's header and framing push it over) as well as far.
    topic = await large_topic(kafka)
    async with AIOKafkaEventPublisher(kafka) as publisher:
        before = await publisher.publish(topic, key=b"k", value=b"before")
        with pytest.raises(PublishError):
            await publisher.publish(topic, key=b"k", value=b"x" * size)
        after = await publisher.publish(topic, key=b"k", value=b"after")
    records = await read_to_end(kafka, [topic])
    assert [(r.offset, r.value) for r in records] == [
        (before.offset, b"before"),
        (after.offset, b"after"),
    ]


async def test_a_record_just_under_the_limit_is_published(kafka: KafkaSettings) -> None:
    topic = await large_topic(kafka)
    value = b"y" * (MAX_MESSAGE_BYTES - 200)
    async with AIOKafkaEventPublisher(kafka) as publisher:
        sent = await publisher.publish(topic, key=b"k", value=value, headers=[("h", b"1")])
        after = await publisher.publish(topic, key=b"k", value=b"after")
    records = await read_to_end(kafka, [topic])
    assert [(r.offset, r.value) for r in records] == [
        (sent.offset, value),
        (after.offset, b"after"),
    ]


async def test_a_topic_ending_on_a_transaction_marker_is_read_to_its_end(
    kafka: KafkaSettings,
) -> None:
    # The commit marker takes the last offset and is never returned by a fetch: a reader
    # waiting for a record at that offset (a changelog's restore) would wait forever.
    topic = await create_topic(kafka)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers, transactional_id=unique("tx")
    )
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_and_wait(topic, b"v", key=b"k")
    finally:
        await producer.stop()
    ends = await end_offsets(kafka, [topic])
    assert sum(ends.values()) == 2  # the record and the marker
    records = await read_to_end(kafka, [topic], timeout_s=10)
    assert [(r.key, r.value) for r in records] == [(b"k", b"v")]
