from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from peepers_common.namespaces import connect_redis
from peepers_common.settings import KafkaSettings
from peepers_messages.settings import Settings
from peepers_sandbox.app import Sandbox, run_sandbox
from peepers_sandbox.config import MarketplaceConfig, NotifierConfig, SandboxConfig
from tests.integration.messages.harness import Stack, messages_stack


@pytest.fixture
async def redis() -> AsyncIterator[aioredis.Redis]:
    """A client of the shared Redis as the messages service's ACL user."""
    client = connect_redis(Settings().redis)
    yield client
    await client.aclose()


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    config = SandboxConfig(
        marketplace=MarketplaceConfig(
            sellers=2,
            items_per_seller=40,
            orders_per_seller=20,
            questions_per_seller=12,
            claims_per_seller=3,
            buyers=20,
        ),
        notifier=NotifierConfig(enabled=False),
    )
    async with run_sandbox(config) as sb:
        yield sb


@pytest.fixture
async def messages(sandbox: Sandbox, kafka: KafkaSettings) -> AsyncIterator[Stack]:
    async with messages_stack(sandbox, kafka) as built:
        yield built
