from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from peepers_common.settings import KafkaSettings
from peepers_common.topic_admin import ensure_topics
from peepers_common.topics import TOPICS, TopicSpec, notification_topic
from tests.integration.ingest.broker import PrivateBroker, kafka_libs
from tests.support import unique

ML_TOPICS_USED = ("items", "orders_v2")


async def make_topics(kafka: KafkaSettings, ml_topics: Sequence[str] = ML_TOPICS_USED) -> str:
    """Registry-shaped notification topics behind a fresh prefix; returns the prefix."""
    prefix = f"{unique('test')}."
    names = [notification_topic(t) for t in ml_topics] + [notification_topic("unknown")]
    specs = [
        TopicSpec(
            prefix + name, TOPICS[name].partitions, TOPICS[name].description, TOPICS[name].config
        )
        for name in names
    ]
    await ensure_topics(kafka, specs)
    return prefix


@pytest.fixture
async def topic_prefix(kafka: KafkaSettings) -> str:
    return await make_topics(kafka)


@pytest.fixture(scope="module")
def private_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateBroker]:
    libs = kafka_libs()
    if libs is None:
        pytest.fail("Kafka jars are missing: run scripts/stack up first")
    broker = PrivateBroker(Path(tmp_path_factory.mktemp("kafka")), libs)
    broker.format()
    broker.start()
    try:
        yield broker
    finally:
        broker.close()
