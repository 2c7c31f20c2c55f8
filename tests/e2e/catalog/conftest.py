from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from peepers_catalog.settings import Settings
from peepers_common.namespaces import connect_redis


@pytest.fixture
async def catalog_redis() -> AsyncIterator[aioredis.Redis]:
    """Redis as the catalog ACL user, as the service logs in."""
    client = connect_redis(Settings().redis)
    yield client
    await client.aclose()
