from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from peepers_common.consuming import (
    H_ATTEMPT,
    H_CONSUMER,
    H_ERROR,
    H_ERROR_KIND,
    H_NOT_BEFORE,
    H_SOURCE_OFFSET,
    H_SOURCE_TOPIC,
    Fate,
    InboundRecord,
    RecordProcessor,
    RetryPolicy,
    process_batch,
)
from peepers_common.error_tracking import current_seller
from peepers_common.errors import MlForbidden, MlUnavailable, PublishError
from peepers_common.testing import InMemoryEventPublisher
from peepers_common.tracing import TraceContext, current_trace

TOPIC = "ml.notifications.items"
NOW = 1_000_000.0
POLICY = RetryPolicy(
    in_place_attempts=2,
    in_place_initial_s=0.001,
    park_delays_s=(10.0, 60.0),
    republish_initial_s=0.001,
)


def record(**headers: bytes) -> InboundRecord:
    base = {"ce_id": b"n-1", **headers}
    return InboundRecord.from_kafka(TOPIC, 2, 41, b"7:/items/MLB1", b"{}", list(base.items()))


@pytest.fixture
def publisher() -> InMemoryEventPublisher:
    return InMemoryEventPublisher()


@pytest.fixture
def processor(publisher: InMemoryEventPublisher) -> RecordProcessor:
    return RecordProcessor(
        consumer="catalog", publisher=publisher, policy=POLICY, clock=lambda: NOW
    )


def failing(exc: Exception, times: int = 1_000):
    calls: list[int] = []

    async def handler(_record: InboundRecord) -> str:
        calls.append(1)
        if len(calls) <= times:
            raise exc
        return "ok"

    return handler, calls


async def test_a_handled_record_publishes_nothing(
    processor: RecordProcessor, publisher: InMemoryEventPublisher
) -> None:
    handler, _ = failing(MlUnavailable("x"), times=0)
    assert await processor.process(record(), handler) == Fate.DONE
    assert publisher.records == []


async def test_a_transient_failure_is_retried_in_place_first(
    processor: RecordProcessor, publisher: InMemoryEventPublisher
) -> None:
    handler, calls = failing(MlUnavailable("503"), times=1)
    assert await processor.process(record(), handler) == Fate.DONE
    assert len(calls) == 2
    assert publisher.records == []


async def test_a_persistent_transient_failure_is_parked_until_its_due_time(
    processor: RecordProcessor, publisher: InMemoryEventPublisher
) -> None:
    handler, calls = failing(MlUnavailable("503"))
    assert await processor.process(record(), handler) == Fate.PARKED
    assert len(calls) == POLICY.in_place_attempts
    [parked] = publisher.records
    assert parked.topic == TOPIC + ".retry"
    assert parked.key == b"7:/items/MLB1"
    assert parked.header("ce_id") == b"n-1"
    assert parked.header(H_CONSUMER) == b"catalog"
    assert parked.header(H_ATTEMPT) == b"1"
    assert parked.header(H_NOT_BEFORE) == str(int((NOW + 10) * 1000)).encode()
    assert parked.header(H_SOURCE_OFFSET) == b"41"


async def test_after_the_last_parking_round_the_record_is_dead_lettered(
    processor: RecordProcessor, publisher: InMemoryEventPublisher
) -> None:
    handler, _ = failing(MlUnavailable("503"))
    parked = record(**{H_ATTEMPT: b"2", H_SOURCE_TOPIC: TOPIC.encode(), H_CONSUMER: b"catalog"})
    assert await processor.process(parked, handler) == Fate.DEAD_LETTERED
    [dead] = publisher.records
    assert dead.topic == TOPIC + ".dlq"
    assert dead.header(H_ERROR_KIND) == b"transient"
    assert dead.header(H_ATTEMPT) == b"2"


async def test_a_permanent_failure_goes_straight_to_the_dlq_with_its_reason(
    processor: RecordProcessor, publisher: InMemoryEventPublisher
) -> None:
    handler, calls = failing(MlForbidden("the seller revoked us", status=403))
    assert await processor.process(record(), handler) == Fate.DEAD_LETTERED
    assert len(calls) == 1
    [dead] = publisher.records
    assert dead.topic == TOPIC + ".dlq"
    assert (dead.header(H_ERROR_KIND), dead.header(H_ERROR)) == (b"permanent", b"MlForbidden")


async def test_a_malformed_record_is_dead_lettered_as_malformed(
    processor: RecordProcessor, publisher: InMemoryEventPublisher
) -> None:
    class Shape(BaseModel):
        n: int

    async def handler(r: InboundRecord) -> str:
        Shape.model_validate_json(r.value)
        return "ok"

    assert await processor.process(record(), handler) == Fate.DEAD_LETTERED
    assert publisher.records[0].header(H_ERROR_KIND) == b"malformed"


async def test_a_parked_record_of_another_consumer_is_skipped(
    processor: RecordProcessor, publisher: InMemoryEventPublisher
) -> None:
    handler, calls = failing(MlUnavailable("503"), times=0)
    assert await processor.process(record(**{H_CONSUMER: b"orders"}), handler) == Fate.SKIPPED
    assert calls == []


async def test_parking_waits_for_kafka_instead_of_dropping_the_record(
    processor: RecordProcessor, publisher: InMemoryEventPublisher
) -> None:
    handler, _ = failing(MlForbidden("403", status=403))
    publisher.failures = [PublishError("broker down"), PublishError("broker down")]
    assert await processor.process(record(), handler) == Fate.DEAD_LETTERED
    assert publisher.attempts == 3
    assert len(publisher.records) == 1


def test_a_parked_record_knows_when_it_is_due(processor: RecordProcessor) -> None:
    due = record(**{H_NOT_BEFORE: str(int((NOW + 5) * 1000)).encode()})
    assert processor.due_in_s(due) == pytest.approx(5.0)
    assert processor.due_in_s(record()) == 0.0


async def test_the_handler_runs_in_a_child_span_of_the_records_trace(
    processor: RecordProcessor,
) -> None:
    cause = TraceContext.new()
    seen: list[TraceContext | None] = []

    async def handler(_record: InboundRecord) -> str:
        seen.append(current_trace.get())
        return "ok"

    await processor.process(record(traceparent=cause.traceparent.encode()), handler)
    await processor.process(record(), handler)
    first, second = seen
    assert first is not None
    assert (first.trace_id, first.span_id != cause.span_id) == (cause.trace_id, True)
    assert second is not None
    assert second.trace_id != cause.trace_id
    assert current_trace.get() is None


async def test_a_batch_runs_keys_side_by_side_and_each_key_in_order(
    processor: RecordProcessor,
) -> None:
    records = [
        InboundRecord.from_kafka(TOPIC, 0, offset, key, b"{}", [])
        for offset, key in enumerate([b"a", b"b", b"a", b"c", b"b", b"a"])
    ]
    running = 0
    most_at_once = 0
    order: list[tuple[bytes | None, int]] = []

    async def handler(record: InboundRecord) -> str:
        nonlocal running, most_at_once
        running += 1
        most_at_once = max(most_at_once, running)
        await asyncio.sleep(0)  # a network wait: other keys may run meanwhile
        order.append((record.key, record.offset))
        running -= 1
        return "ok"

    fates = await process_batch(processor, records, handler)
    assert fates == [Fate.DONE] * 6
    assert most_at_once == 3
    for key in (b"a", b"b", b"c"):
        offsets = [offset for k, offset in order if k == key]
        assert offsets == sorted(offsets)
    assert len(order) == 6


async def test_a_handler_runs_bound_to_the_records_seller_and_nothing_leaks_after(
    processor: RecordProcessor,
) -> None:
    seen: list[int | None] = []

    async def handler(_record: InboundRecord) -> str:
        seen.append(current_seller.get())
        return "ok"

    assert await processor.process(record(), handler) == Fate.DONE
    assert seen == [7]  # the key is 7:/items/MLB1
    assert current_seller.get() is None
