from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from peepers_common.namespaces import connect_redis
from peepers_orders.settings import Settings
from tests.integration.orders.smtp import SmtpSink, smtp_sink


@pytest.fixture
async def orders_redis() -> AsyncIterator[aioredis.Redis]:
    """Redis as the orders ACL user, as the service logs in."""
    client = connect_redis(Settings().redis)
    yield client
    await client.aclose()


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with smtp_sink() as running:
        yield running
