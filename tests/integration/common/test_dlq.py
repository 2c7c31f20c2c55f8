from __future__ import annotations

import asyncio
import sys

from peepers_common.consuming import (
    H_ATTEMPT,
    H_CONSUMER,
    H_ERROR,
    InboundRecord,
    RecordProcessor,
    RetryPolicy,
)
from peepers_common.dlq import read_dead_letters
from peepers_common.errors import MlForbidden
from peepers_common.kafka import AIOKafkaEventPublisher
from peepers_common.settings import KafkaSettings
from peepers_common.topic_admin import ensure_topics
from peepers_common.topics import TopicSpec, dlq_topic, retry_topic
from tests.support import consume, unique


async def failure_topics(kafka: KafkaSettings) -> str:
    topic = unique("test-src")
    await ensure_topics(
        kafka,
        [TopicSpec(name, 1, "test") for name in (topic, retry_topic(topic), dlq_topic(topic))],
    )
    return topic


async def dead_letter(kafka: KafkaSettings, topic: str, consumer: str, offset: int) -> None:
    async def revoked(_record: InboundRecord) -> str:
        msg = "the seller revoked us"
        raise MlForbidden(msg, status=403)

    async with AIOKafkaEventPublisher(kafka) as publisher:
        processor = RecordProcessor(
            consumer=consumer, publisher=publisher, policy=RetryPolicy(in_place_attempts=1)
        )
        record = InboundRecord.from_kafka(
            topic, 0, offset, b"7:/items/MLB1", b'{"n":1}', [("ce_id", b"n-1")]
        )
        await processor.process(record, revoked)


async def cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "peepers_common.dlq",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


async def test_dead_letters_are_listed_with_their_consumer_and_reason(
    kafka: KafkaSettings,
) -> None:
    topic = await failure_topics(kafka)
    await dead_letter(kafka, topic, "catalog", 11)
    await dead_letter(kafka, topic, "orders", 12)
    letters = await read_dead_letters(kafka, topic, consumer="catalog")
    assert len(letters) == 1
    assert letters[0].header(H_ERROR) == "MlForbidden"
    assert letters[0].record.value == b'{"n":1}'
    code, out, err = await cli("list", topic)
    assert code == 0, err
    assert "MlForbidden" in out
    assert "catalog" in out
    assert "orders" in out
    assert "2 dead letter(s)" in err


async def test_a_replayed_dead_letter_goes_back_to_its_consumer_through_the_retry_topic(
    kafka: KafkaSettings,
) -> None:
    topic = await failure_topics(kafka)
    await dead_letter(kafka, topic, "catalog", 11)
    await dead_letter(kafka, topic, "orders", 12)
    code, out, err = await cli("replay", topic, "--consumer", "catalog")
    assert code == 0, err
    assert "replayed 1 record(s)" in out
    [retried] = await consume(kafka, retry_topic(topic), 1)
    headers = dict(retried.headers)
    assert headers[H_CONSUMER] == b"catalog"
    assert headers[H_ATTEMPT] == b"0"
    assert headers["ce_id"] == b"n-1"
    assert retried.value == b'{"n":1}'


async def test_listing_a_topic_without_a_dlq_fails_clearly(kafka: KafkaSettings) -> None:
    code, _out, err = await cli("list", unique("no-such-topic"))
    assert code == 1
    assert "does not exist" in err
