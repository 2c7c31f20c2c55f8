import asyncio
from datetime import UTC, datetime

import pytest

from peepers_common.notifications import Notification
from peepers_ingest.errors import SpoolUnavailable
from peepers_ingest.handlers import Intake, Outcome, build_record, prefixed_topics
from peepers_ingest.ports import OutboundRecord
from tests.support import wait_until
from tests.unit.ingest.fakes import FakeDedup, FakePublisher, FakeSpool, notification_body

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def record(n: int = 1, **overrides: object) -> OutboundRecord:
    body = notification_body(n, **overrides)
    return build_record(
        Notification.model_validate(body),
        body,
        topic_for=prefixed_topics("t."),
        received_at=NOW,
        traceparent=None,
    )


@pytest.fixture
def parts() -> tuple[FakePublisher, FakeSpool, FakeDedup]:
    return FakePublisher(), FakeSpool(), FakeDedup()


def intake(parts: tuple[FakePublisher, FakeSpool, FakeDedup], budget_s: float = 0.05) -> Intake:
    publisher, spool, dedup = parts
    return Intake(publisher, spool, dedup, topic_for=prefixed_topics("t."), budget_s=budget_s)


async def test_a_notification_kafka_acks_in_time_is_published_and_marked(parts) -> None:
    publisher, spool, dedup = parts
    assert await intake(parts).accept(record()) is Outcome.PUBLISHED
    [sent] = publisher.acked
    assert sent.topic == "t.ml.notifications.items"
    assert sent.key == b"123456789:/items/MLB1"
    assert dedup.marked == {record().notification_id}
    assert spool.depth == 0


async def test_an_unknown_ml_topic_is_routed_to_unrouted(parts) -> None:
    publisher, _, _ = parts
    await intake(parts).accept(record(topic="brand_new_topic"))
    assert publisher.acked[0].topic == "t.ml.notifications.unrouted"


async def test_a_redelivered_notification_is_not_published_again(parts) -> None:
    publisher, _, _ = parts
    subject = intake(parts)
    assert await subject.accept(record()) is Outcome.PUBLISHED
    assert await subject.accept(record(attempts=2)) is Outcome.DUPLICATE
    assert len(publisher.acked) == 1


async def test_concurrent_redeliveries_publish_once(parts) -> None:
    publisher, _, _ = parts
    subject = intake(parts)
    outcomes = await asyncio.gather(*(subject.accept(record()) for _ in range(5)))
    assert sorted(outcomes) == sorted([Outcome.PUBLISHED] + [Outcome.DUPLICATE] * 4)
    assert len(publisher.acked) == 1


async def test_the_notifications_of_one_turn_are_checked_and_marked_together(parts) -> None:
    publisher, _, dedup = parts
    subject = intake(parts)
    dedup.marked.add(record(0).notification_id)
    outcomes = await asyncio.gather(*(subject.accept(record(n)) for n in range(4)))
    assert outcomes == [Outcome.DUPLICATE] + [Outcome.PUBLISHED] * 3
    ids = [record(n).notification_id for n in range(4)]
    assert dedup.checks == [ids]
    assert dedup.marks == [ids[1:]]
    assert [s.ce_id for s in publisher.acked] == ids[1:]


async def first_copy_at_kafka(
    subject: Intake, publisher: FakePublisher, first: OutboundRecord
) -> asyncio.Future[Outcome]:
    """``first`` accepted in the background, once its send reached the (stalling) Kafka."""
    accepted = asyncio.ensure_future(subject.accept(first))
    await wait_until(lambda: _async(publisher.attempts == 1))
    return accepted


async def test_a_redelivery_while_its_first_copy_waits_for_kafka_is_a_duplicate(parts) -> None:
    publisher, _, _ = parts
    publisher.stall = True
    subject = intake(parts, budget_s=5)
    first = await first_copy_at_kafka(subject, publisher, record())
    second = asyncio.ensure_future(subject.accept(record(attempts=2)))
    await asyncio.sleep(0.02)
    assert not second.done()  # waits for the first copy's batch, not for Redis
    publisher.release()
    assert await first is Outcome.PUBLISHED
    assert await second is Outcome.DUPLICATE
    assert len(publisher.acked) == 1


async def test_a_held_back_redelivery_does_not_hold_back_the_rest_of_its_turn(parts) -> None:
    publisher, _, _ = parts
    publisher.stall_keys.add(record(1).key)
    subject = intake(parts, budget_s=5)
    first = await first_copy_at_kafka(subject, publisher, record(1))
    # One turn: a redelivery of 1 (whose first copy waits for Kafka) and a new 2.
    redelivery = asyncio.ensure_future(subject.accept(record(1, attempts=2)))
    other = asyncio.ensure_future(subject.accept(record(2)))
    async with asyncio.timeout(1):
        assert await other is Outcome.PUBLISHED
    assert not redelivery.done()
    publisher.release()
    assert await first is Outcome.PUBLISHED
    assert await redelivery is Outcome.DUPLICATE
    assert [s.ce_id for s in publisher.acked] == [
        record(2).notification_id,
        record(1).notification_id,
    ]


async def test_a_redelivery_waiting_on_its_first_copy_is_a_duplicate_if_redis_lost_the_mark(
    parts,
) -> None:
    publisher, _, dedup = parts
    dedup.lose_marks = True
    publisher.stall = True
    subject = intake(parts, budget_s=5)
    first = await first_copy_at_kafka(subject, publisher, record())
    redelivery = asyncio.ensure_future(subject.accept(record(attempts=2)))
    await asyncio.sleep(0.01)
    publisher.release()
    assert await first is Outcome.PUBLISHED
    assert await redelivery is Outcome.DUPLICATE
    assert len(publisher.acked) == 1


async def test_an_unexpected_publish_failure_spools_that_record_only(parts) -> None:
    publisher, spool, dedup = parts
    publisher.broken_keys.add(record(2).key)
    subject = intake(parts)
    outcomes = await asyncio.gather(*(subject.accept(record(n)) for n in range(1, 4)))
    assert outcomes == [Outcome.PUBLISHED, Outcome.SPOOLED, Outcome.PUBLISHED]
    assert [s.record.notification_id for s in spool.records] == [record(2).notification_id]
    assert dedup.marked == {record(n).notification_id for n in range(1, 4)}


async def test_a_late_ack_after_a_503_still_marks_the_notification(parts) -> None:
    publisher, spool, dedup = parts
    publisher.stall = True
    spool.broken = True
    subject = intake(parts, budget_s=0.02)
    with pytest.raises(SpoolUnavailable):
        await subject.accept(record())
    assert dedup.marked == set()
    publisher.release()  # Kafka took it after all: ML's redelivery must be a duplicate
    await wait_until(lambda: _async(record().notification_id in dedup.marked))
    assert await subject.accept(record(attempts=2)) is Outcome.DUPLICATE
    assert len(publisher.acked) == 1


async def test_when_kafka_and_the_spool_both_fail_every_copy_of_a_turn_fails(parts) -> None:
    publisher, spool, dedup = parts
    publisher.fail = True
    spool.broken = True
    subject = intake(parts)
    outcomes = await asyncio.gather(
        *(subject.accept(record()) for _ in range(3)),
        subject.accept(record(2)),
        return_exceptions=True,
    )
    assert [type(outcome) for outcome in outcomes] == [SpoolUnavailable] * 4
    assert dedup.marked == set()
    # The next turn tries again, and stores what it can.
    spool.broken = False
    assert await subject.accept(record()) is Outcome.SPOOLED


async def test_kafka_down_spools_and_the_drain_publishes_later_in_order(parts) -> None:
    publisher, spool, dedup = parts
    publisher.fail = True
    subject = intake(parts)
    outcomes = [await subject.accept(record(n, resource="/items/SAME")) for n in range(3)]
    assert outcomes == [Outcome.SPOOLED] * 3
    assert spool.depth == 3
    assert len(dedup.marked) == 3  # durable in the spool, so a redelivery is a duplicate
    assert not subject.kafka_healthy
    publisher.fail = False
    assert await subject.drain_once() == 3
    assert [s.ce_id for s in publisher.acked] == [record(n).notification_id for n in range(3)]
    assert spool.depth == 0
    assert subject.kafka_healthy


async def test_while_a_key_waits_in_the_spool_later_records_of_it_queue_behind(parts) -> None:
    publisher, _, _ = parts
    publisher.fail = True
    subject = intake(parts)
    await subject.accept(record(1, resource="/items/K"))
    publisher.fail = False
    subject.kafka_healthy = True  # Kafka looks fine again, but key K still waits
    assert await subject.accept(record(2, resource="/items/K")) is Outcome.SPOOLED
    assert await subject.accept(record(3, resource="/items/OTHER")) is Outcome.PUBLISHED
    await subject.drain_once()
    keyed = [s.ce_id for s in publisher.acked if s.key.endswith(b"/items/K")]
    assert keyed == [record(1).notification_id, record(2).notification_id]


async def test_a_slow_ack_is_spooled_within_the_budget_and_never_duplicated(parts) -> None:
    publisher, spool, _ = parts
    publisher.stall = True
    subject = intake(parts, budget_s=0.02)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await subject.accept(record()) is Outcome.SPOOLED
    assert loop.time() - started < 0.5
    publisher.release()  # the original send lands after all
    assert await subject.drain_once() == 1
    assert len(publisher.acked) == 1
    assert spool.depth == 0


async def test_when_kafka_and_the_spool_both_fail_nothing_is_marked(parts) -> None:
    publisher, spool, dedup = parts
    publisher.fail = True
    spool.broken = True
    with pytest.raises(SpoolUnavailable):
        await intake(parts).accept(record())
    assert dedup.marked == set()


async def test_a_failed_drain_keeps_the_records_and_their_order(parts) -> None:
    publisher, spool, _ = parts
    publisher.fail = True
    subject = intake(parts)
    for n in range(3):
        await subject.accept(record(n, resource="/items/K"))
    with pytest.raises(Exception, match="draining"):
        await subject.drain_once()
    assert [s.record.notification_id for s in spool.records] == [
        record(n).notification_id for n in range(3)
    ]


async def test_an_intake_over_a_non_empty_spool_drains_it_first(parts) -> None:
    publisher, spool, _ = parts
    await spool.append(record(9))
    subject = intake(parts)
    assert subject.spool_wakeup.is_set()
    assert await subject.accept(record(1)) is Outcome.SPOOLED
    await subject.drain_once()
    assert [s.ce_id for s in publisher.acked] == [
        record(9).notification_id,
        record(1).notification_id,
    ]


async def test_the_drainer_task_retries_until_kafka_is_back(parts) -> None:
    from peepers_ingest.drainer import drain_forever, stop_draining

    publisher, spool, _ = parts
    publisher.fail = True
    subject = intake(parts)
    await subject.accept(record())
    task = asyncio.create_task(drain_forever(subject, retry_initial_s=0.01, retry_max_s=0.02))
    try:
        await wait_until(lambda: _async(publisher.attempts >= 3))
        publisher.fail = False
        await wait_until(lambda: _async(spool.depth == 0))
    finally:
        await stop_draining(task)
    assert len(publisher.acked) == 1


async def _async(value: bool) -> bool:
    return value
