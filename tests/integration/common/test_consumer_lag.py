"""peepers_common.consumer_lag against the real Kafka: offsets committed by a real group,
records with known timestamps, and the gauges the monitor exports."""

from __future__ import annotations

import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from prometheus_client import REGISTRY

from peepers_common.consumer_lag import ConsumerLagMonitor, TopicLag
from peepers_common.errors import InfrastructureError
from peepers_common.settings import KafkaSettings
from tests.support import create_topic, unique, wait_until

# Whole seconds: record timestamps are milliseconds. Kafka refuses timestamps far ahead.
NOW = float(int(time.time()))


async def _produce(kafka: KafkaSettings, topic: str, partition: int, count: int, at: float) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    await producer.start()
    try:
        for n in range(count):
            await producer.send_and_wait(
                topic, f"r{n}".encode(), partition=partition, timestamp_ms=int(at * 1000)
            )
    finally:
        await producer.stop()


async def _commit(kafka: KafkaSettings, group: str, offsets: dict[TopicPartition, int]) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})
    finally:
        await consumer.stop()


@pytest.fixture
async def two_partitions(kafka: KafkaSettings) -> str:
    """5 records 100 s old on partition 0, 3 records 10 s old on partition 1."""
    topic = await create_topic(kafka, partitions=2)
    await _produce(kafka, topic, 0, 5, NOW - 100)
    await _produce(kafka, topic, 1, 3, NOW - 10)
    return topic


async def test_a_group_that_committed_nothing_lags_by_every_record_and_the_oldest_age(
    kafka: KafkaSettings, two_partitions: str
) -> None:
    async with ConsumerLagMonitor(
        kafka, unique("group"), [two_partitions], clock=lambda: NOW
    ) as monitor:
        assert await monitor.measure() == [TopicLag(two_partitions, records=8, seconds=100.0)]


async def test_commits_shrink_the_lag_and_a_caught_up_group_lags_by_nothing(
    kafka: KafkaSettings, two_partitions: str
) -> None:
    group = unique("group")
    p0, p1 = TopicPartition(two_partitions, 0), TopicPartition(two_partitions, 1)
    async with ConsumerLagMonitor(kafka, group, [two_partitions], clock=lambda: NOW) as monitor:
        await _commit(kafka, group, {p0: 5, p1: 1})
        assert await monitor.measure() == [TopicLag(two_partitions, records=2, seconds=10.0)]
        await _commit(kafka, group, {p1: 3})
        assert await monitor.measure() == [TopicLag(two_partitions, records=0, seconds=0.0)]


async def test_the_lag_in_seconds_is_the_oldest_uncommitted_records_age_and_grows_with_the_clock(
    kafka: KafkaSettings, two_partitions: str
) -> None:
    group = unique("group")
    now = [NOW]
    await _commit(kafka, group, {TopicPartition(two_partitions, 0): 2})
    async with ConsumerLagMonitor(kafka, group, [two_partitions], clock=lambda: now[0]) as monitor:
        assert await monitor.measure() == [TopicLag(two_partitions, records=6, seconds=100.0)]
        now[0] += 60
        # Nothing committed meanwhile: a stalled group ages as fast as the clock.
        assert await monitor.measure() == [TopicLag(two_partitions, records=6, seconds=160.0)]


async def test_the_monitor_exports_its_groups_lag_as_gauges(
    kafka: KafkaSettings, two_partitions: str
) -> None:
    group = unique("group")
    labels = {"group": group, "topic": two_partitions}

    async def exported() -> bool:
        return REGISTRY.get_sample_value("peepers_consumer_lag_records", labels) == 8

    async with ConsumerLagMonitor(kafka, group, [two_partitions], interval_s=0.1):
        await wait_until(exported)
        seconds = REGISTRY.get_sample_value("peepers_consumer_lag_seconds", labels)
        assert seconds is not None
        assert seconds >= time.time() - NOW + 100 - 5


async def test_a_topic_that_does_not_exist_is_an_infrastructure_error(
    kafka: KafkaSettings,
) -> None:
    async with ConsumerLagMonitor(kafka, unique("group"), [unique("no-such-topic")]) as monitor:
        with pytest.raises(InfrastructureError, match="does not exist"):
            await monitor.measure()


def test_a_monitor_without_topics_is_refused(kafka: KafkaSettings) -> None:
    with pytest.raises(ValueError, match="at least one topic"):
        ConsumerLagMonitor(kafka, unique("group"), [])
