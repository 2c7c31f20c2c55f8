from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from peepers_common.errors import InfrastructureError
from peepers_common.namespaces import connect_redis
from peepers_common.settings import KafkaSettings, StackSettings
from peepers_common.topic_admin import delete_topics_containing
from tests.support import SESSION_TOKEN


@pytest.fixture(scope="session")
def stack() -> StackSettings:
    """The local stack, located through the same env vars as everything else (.stack/env)."""
    return StackSettings()


@pytest.fixture(scope="session")
def kafka(stack: StackSettings) -> KafkaSettings:
    return stack.kafka


@pytest.fixture(scope="session", autouse=True)
def _delete_the_sessions_topics(stack: StackSettings) -> Iterator[None]:
    """At the end, delete the Kafka topics this session named (`unique` marks them).

    A local broker that kept every test's topics (thousands) became several times slower
    per record, which showed in every benchmark run on it afterwards.
    """
    yield
    host, _, port = stack.kafka.bootstrap_servers.split(",")[0].rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return  # no broker (a unit-only run): nothing was created on one
    try:
        asyncio.run(delete_topics_containing(stack.kafka, f"-{SESSION_TOKEN}"))
    except InfrastructureError as exc:
        print(f"\ncould not delete this session's topics: {exc}")


@pytest.fixture
async def redis_admin(stack: StackSettings) -> AsyncIterator[aioredis.Redis]:
    """Redis as the default (operator) user. An unreachable Redis fails the test."""
    client = connect_redis(stack.redis)
    await client.ping()
    yield client
    await client.aclose()
