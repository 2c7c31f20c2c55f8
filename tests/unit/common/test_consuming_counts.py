"""The consumer loop's bookkeeping: outcomes and batch cycles observed per batch, retries without
tenacity."""

from __future__ import annotations

from collections.abc import AsyncIterator

from prometheus_client import REGISTRY

from peepers_common.consuming import (
    BatchCycle,
    Fate,
    InboundRecord,
    RecordProcessor,
    RetryPolicy,
    process_batch,
    process_batches,
)
from peepers_common.errors import MlUnavailable
from peepers_common.testing import InMemoryEventPublisher
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
