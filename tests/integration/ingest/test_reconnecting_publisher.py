"""ingest's publisher before Kafka answers: sends fail at once, and it connects later."""

from __future__ import annotations

import asyncio

import pytest

from peepers_common.errors import PublishError
from peepers_common.kafka import RecordSender
from peepers_common.settings import KafkaSettings
from peepers_ingest.adapters import ReconnectingPublisher
from tests.integration.ingest.support import free_port
from tests.support import create_topic


async def test_before_kafka_answers_a_send_fails_at_once_and_is_not_queued() -> None:
    nowhere = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}")
    async with ReconnectingPublisher(nowhere, retry_initial_s=0.05) as publisher:
        assert isinstance(publisher, RecordSender)
        sent = publisher.send("any-topic", key=b"k", value=b"v")
        assert sent.done()
        with pytest.raises(PublishError, match="not connected"):
            await sent
        with pytest.raises(PublishError, match="not connected"):
            await publisher.publish("any-topic", key=b"k", value=b"v")
        assert not publisher.connected


async def test_once_connected_a_send_resolves_to_the_records_offset(kafka: KafkaSettings) -> None:
    topic = await create_topic(kafka)
    async with ReconnectingPublisher(kafka) as publisher:
        async with asyncio.timeout(20):
            await publisher.wait_connected()
        sent = [publisher.send(topic, key=b"k", value=b"%d" % n) for n in range(3)]
        async with asyncio.timeout(20):
            published = await asyncio.gather(*sent)
    assert [p.offset for p in published] == [0, 1, 2]
    assert {p.topic for p in published} == {topic}
