from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from peepers_common.namespaces import connect_redis
from peepers_common.settings import KafkaSettings, StackSettings


@pytest.fixture(scope="session")
def stack() -> StackSettings:
    """The local stack, located through the same env vars as everything else (.stack/env)."""
    return StackSettings()


@pytest.fixture(scope="session")
def kafka(stack: StackSettings) -> KafkaSettings:
    return stack.kafka


@pytest.fixture
async def redis_admin(stack: StackSettings) -> AsyncIterator[aioredis.Redis]:
    """Redis as the default (operator) user. An unreachable Redis fails the test."""
    client = connect_redis(stack.redis)
    await client.ping()
    yield client
    await client.aclose()
