"""The consumer loop's bookkeeping: outcomes and batch cycles observed per batch, retries without
tenacity."""

from __future__ import annotations

from collections.abc import AsyncIterator

from prometheus_client import REGISTRY

from peepers_common.consuming import (
    COALESCED,
    BatchCycle,
    Fate,
    InboundRecord,
    RecordProcessor,
    RetryPolicy,
    process_batch,
    process_batches,
)
from peepers_common.errors import MlForbidden, MlUnavailable
from peepers_common.testing import InMemoryEventPublisher
from peepers_common.topics import dlq_topic, retry_topic
from tests.support import unique


def records(topic: str, n: int) -> list[InboundRecord]:
    return [
        InboundRecord.from_kafka(topic, 0, offset, f"7:/items/MLB{offset}".encode(), b"{}", [])
        for offset in range(n)
    ]


def done(consumer: str, topic: str, outcome: str) -> float:
    labels = {"consumer": consumer, "topic": topic, "outcome": outcome}
    return REGISTRY.get_sample_value("peepers_consumer_records_total", labels) or 0.0


def processed(consumer: str, topic: str) -> float:
    labels = {"consumer": consumer, "topic": topic}
    return REGISTRY.get_sample_value("peepers_consumer_processing_seconds_count", labels) or 0.0


async def test_a_batch_counts_each_outcome_of_its_records() -> None:
    consumer, topic = unique("consumer"), unique("topic")
    processor = RecordProcessor(consumer=consumer, publisher=InMemoryEventPublisher())

    async def handler(record: InboundRecord) -> str:
        return "even" if record.offset % 2 == 0 else "odd"

    fates = await process_batch(processor, records(topic, 5), handler)
    assert fates == [Fate.DONE] * 5
    assert done(consumer, topic, "even") == 3
    assert done(consumer, topic, "odd") == 2
    assert processed(consumer, topic) == 5
    await processor.process(records(topic, 1)[0], handler)
    assert done(consumer, topic, "even") == 4


async def test_a_transient_failure_is_retried_in_place_with_backoff_then_counted() -> None:
    consumer, topic = unique("consumer"), unique("topic")
    policy = RetryPolicy(in_place_attempts=3, in_place_initial_s=0.001, in_place_max_s=0.002)
    processor = RecordProcessor(
        consumer=consumer, publisher=InMemoryEventPublisher(), policy=policy
    )
    calls: list[int] = []

    async def flaky(_record: InboundRecord) -> str:
        calls.append(1)
        if len(calls) < 3:
            msg = "ML answered 503"
            raise MlUnavailable(msg, status=503)
        return "ok"

    assert await processor.process(records(topic, 1)[0], flaky) == Fate.DONE
    assert len(calls) == 3
    assert done(consumer, topic, "ok") == 1


def batch_sample(name: str, consumer: str, **labels: str) -> float:
    full = {"consumer": consumer, "agent": "demo.items", **labels}
    return REGISTRY.get_sample_value(f"peepers_consumer_batch_{name}", full) or 0.0


async def test_a_batch_loop_observes_each_batchs_size_and_cycle_once() -> None:
    consumer, topic = unique("consumer"), unique("topic")
    processor = RecordProcessor(consumer=consumer, publisher=InMemoryEventPublisher())
    ticks = iter([10.0, 10.25, 10.5, 10.625])  # taken, processed, taken, processed
    cycle = BatchCycle(consumer, "demo.items", clock=lambda: next(ticks))
    handled: list[int] = []

    async def handler(record: InboundRecord) -> str:
        handled.append(record.offset)
        return "done"

    async def batches() -> AsyncIterator[list[InboundRecord]]:
        yield records(topic, 3)
        yield records(topic, 5)

    await process_batches(processor, batches(), handler, cycle)
    assert sorted(handled) == [0, 0, 1, 1, 2, 2, 3, 4]
    assert done(consumer, topic, "done") == 8
    assert batch_sample("records_count", consumer) == 2
    assert batch_sample("records_sum", consumer) == 8
    assert batch_sample("records_bucket", consumer, le="4.0") == 1
    assert batch_sample("seconds_count", consumer, phase="process") == 2
    assert batch_sample("seconds_sum", consumer, phase="process") == 0.375
    # The wait runs from one batch done to the next taken: once between two batches.
    assert batch_sample("seconds_count", consumer, phase="wait") == 1
    assert batch_sample("seconds_sum", consumer, phase="wait") == 0.25


def keyed(topic: str, keys: list[bytes], values: list[bytes] | None = None) -> list[InboundRecord]:
    """Records of ``keys``; each value (what its handler reads) is its key unless given."""
    return [
        InboundRecord.from_kafka(topic, 0, n, key, value, [])
        for n, (key, value) in enumerate(zip(keys, values or keys, strict=True))
    ]


def asked(record: InboundRecord) -> bytes:
    """What the record asks its handler to read: its value, unless malformed."""
    if record.value == b"malformed":
        msg = "not a notification"
        raise ValueError(msg)
    return record.value or b""


async def test_a_coalescing_batch_handles_only_the_newest_record_asking_for_each_read() -> None:
    consumer, topic = unique("consumer"), unique("topic")
    processor = RecordProcessor(consumer=consumer, publisher=InMemoryEventPublisher())
    handled: list[int] = []

    async def handler(record: InboundRecord) -> str:
        handled.append(record.offset)
        return "applied"

    batch = keyed(
        topic,
        [b"a", b"b", b"a", b"c", b"a", b"b", b"a", b"a"],
        [b"a", b"b", b"malformed", b"c", b"a", b"b", b"a2", b"a"],
    )
    fates = await process_batch(processor, batch, handler, coalesce=asked)
    assert fates == [Fate.DONE] * 8  # the batch is acked whole
    # c once; b's newest; of key a: its newest (a), a2 (another read), the malformed one
    assert sorted(handled) == [2, 3, 5, 6, 7]
    assert done(consumer, topic, "applied") == 5
    assert done(consumer, topic, COALESCED) == 3
    handled.clear()
    await process_batch(processor, batch, handler)  # without: every record, in key order
    assert sorted(handled) == list(range(8))


async def test_a_newest_record_that_fails_for_good_leaves_the_one_before_it_to_be_handled() -> None:
    consumer, topic = unique("consumer"), unique("topic")
    publisher = InMemoryEventPublisher()
    processor = RecordProcessor(consumer=consumer, publisher=publisher)
    handled: list[int] = []

    async def handler(record: InboundRecord) -> str:
        handled.append(record.offset)
        if record.offset == 3:
            msg = "a foreign notification"
            raise MlForbidden(msg)  # not transient
        return "applied"

    fates = await process_batch(processor, keyed(topic, [b"a"] * 4), handler, coalesce=asked)
    assert handled == [3, 2]  # newest first; the one before it covers the rest
    assert fates == [Fate.DONE, Fate.DONE, Fate.DONE, Fate.DEAD_LETTERED]
    assert [r.topic for r in publisher.records] == [dlq_topic(topic)]
    assert done(consumer, topic, COALESCED) == 2


async def test_a_parked_newest_record_covers_the_older_ones_when_it_is_retried() -> None:
    consumer, topic = unique("consumer"), unique("topic")
    publisher = InMemoryEventPublisher()
    policy = RetryPolicy(in_place_attempts=1, park_delays_s=(10.0,))
    processor = RecordProcessor(consumer=consumer, publisher=publisher, policy=policy)
    handled: list[int] = []

    async def handler(record: InboundRecord) -> str:
        handled.append(record.offset)
        msg = "503"
        raise MlUnavailable(msg)

    fates = await process_batch(processor, keyed(topic, [b"a"] * 3), handler, coalesce=asked)
    assert handled == [2]
    assert fates == [Fate.DONE, Fate.DONE, Fate.PARKED]
    assert [r.topic for r in publisher.records] == [retry_topic(topic)]
