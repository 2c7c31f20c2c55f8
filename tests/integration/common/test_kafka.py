from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from peepers_common.kafka import AIOKafkaEventPublisher
from peepers_common.settings import KafkaSettings
from peepers_common.topic_admin import ensure_topics
from peepers_common.topics import TOPICS, TopicSpec, notification_topic
from tests.support import consume, create_topic, unique


async def test_registry_topics_exist_on_the_cluster(kafka: KafkaSettings) -> None:
    report = await ensure_topics(kafka)
    assert not report.wider_than_registry
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        described = {
            t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(list(TOPICS))
        }
    finally:
        await admin.close()
    assert described == {name: spec.partitions for name, spec in TOPICS.items()}


async def test_ensuring_topics_twice_changes_nothing_the_second_time(kafka: KafkaSettings) -> None:
    spec = TopicSpec(unique("test-topic"), 2, "probe", {"retention.ms": "3600000"})
    first = await ensure_topics(kafka, [spec])
    second = await ensure_topics(kafka, [spec])
    assert first.created == [spec.name]
    assert second.unchanged == [spec.name]
    assert second.created == second.grown == second.reconfigured == []


async def test_ensure_grows_partitions_and_fixes_drifted_config(kafka: KafkaSettings) -> None:
    name = unique("test-topic")
    await ensure_topics(kafka, [TopicSpec(name, 1, "probe", {"retention.ms": "3600000"})])
    report = await ensure_topics(kafka, [TopicSpec(name, 3, "probe", {"retention.ms": "7200000"})])
    assert report.grown == [name]
    assert report.reconfigured == [name]


async def test_a_record_published_to_a_registry_topic_is_consumed_with_key_and_headers(
    kafka: KafkaSettings,
) -> None:
    topic = await create_topic(kafka, like=TOPICS[notification_topic("items")])
    async with AIOKafkaEventPublisher(kafka) as publisher:
        published = await publisher.publish(
            topic, key=b"123:/items/MLB1", value=b'{"topic":"items"}', headers=[("ce_id", b"abc")]
        )
    assert published.topic == topic
    [record] = await consume(kafka, topic, 1)
    assert (record.key, record.value) == (b"123:/items/MLB1", b'{"topic":"items"}')
    assert ("ce_id", b"abc") in list(record.headers)
    assert record.partition == published.partition


async def test_records_of_one_key_land_on_one_partition_in_order(kafka: KafkaSettings) -> None:
    topic = await create_topic(kafka, like=TOPICS[notification_topic("orders_v2")])
    async with AIOKafkaEventPublisher(kafka) as publisher:
        partitions = {
            (await publisher.publish(topic, key=b"9:/orders/1", value=str(i).encode())).partition
            for i in range(20)
        }
    assert len(partitions) == 1
    records = await consume(kafka, topic, 20)
    assert [r.value for r in records] == [str(i).encode() for i in range(20)]


async def test_a_consumer_group_resumes_from_its_committed_offset(kafka: KafkaSettings) -> None:
    topic = await create_topic(kafka)
    group = unique("test-group")
    async with AIOKafkaEventPublisher(kafka) as publisher:
        for i in range(10):
            await publisher.publish(topic, key=b"k", value=str(i).encode())
    first = await consume(kafka, topic, 4, group_id=group)
    assert [r.value for r in first] == [b"0", b"1", b"2", b"3"]
    # A new consumer in the same group (a restarted worker) starts after the commit.
    second = await consume(kafka, topic, 6, group_id=group)
    assert [r.value for r in second] == [str(i).encode() for i in range(4, 10)]
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, group_id=group)
    await consumer.start()
    try:
        assert await consumer.committed(TopicPartition(topic, 0)) == 10
    finally:
        await consumer.stop()
