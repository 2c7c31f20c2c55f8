from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from peepers_common.namespaces import connect_redis
from peepers_messages.settings import Settings


@pytest.fixture
async def messages_redis() -> AsyncIterator[aioredis.Redis]:
    """Redis as the messages ACL user, as the service logs in."""
    client = connect_redis(Settings().redis)
    yield client
    await client.aclose()
