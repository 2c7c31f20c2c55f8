from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from peepers_sandbox import (
    DEMO_APP_ID,
    DEMO_SELLER_ID,
    AppConfig,
    MarketplaceConfig,
    NotifierConfig,
    Sandbox,
    SandboxConfig,
    run_sandbox,
)
from peepers_sandbox.testing import NotificationSink, serve_sink
from tests.sandbox.support import (
    NO_PKCE_APP_ID,
    NO_PKCE_REDIRECT,
    NO_PKCE_SECRET,
    OTHER_SELLER_ID,
    SmallSandbox,
)


@pytest.fixture(scope="session")
async def sandbox() -> AsyncIterator[Sandbox]:
    """One big shared sandbox (5,200 items per seller) for read-mostly conformance tests."""
    config = SandboxConfig(
        apps=[
            AppConfig(),
            AppConfig(
                app_id=NO_PKCE_APP_ID,
                client_secret=NO_PKCE_SECRET,
                redirect_uris=[NO_PKCE_REDIRECT],
                pkce_required=False,
            ),
        ],
        marketplace=MarketplaceConfig(sellers=2, items_per_seller=5200, orders_per_seller=60),
    )
    async with run_sandbox(config) as sb:
        yield sb


@pytest.fixture
async def http(sandbox: Sandbox) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(sandbox.url) as session:
        yield session


@pytest.fixture
async def seller_token(sandbox: Sandbox) -> str:
    return str((await sandbox.admin.mint_token(DEMO_SELLER_ID))["access_token"])


@pytest.fixture
async def other_token(sandbox: Sandbox) -> str:
    return str((await sandbox.admin.mint_token(OTHER_SELLER_ID))["access_token"])


@pytest.fixture
async def sink() -> AsyncIterator[NotificationSink]:
    async with serve_sink() as receiver:
        yield receiver


@pytest.fixture
async def small_sandbox() -> AsyncIterator[SmallSandbox]:
    """A factory for a private, small sandbox, for tests that change faults, limits or time."""
    stack: list[Any] = []

    async def start(callback_url: str | None = None, **overrides: Any) -> Sandbox:
        notifier = overrides.pop("notifier", NotifierConfig())
        market = MarketplaceConfig(
            sellers=2, items_per_seller=40, orders_per_seller=12, questions_per_seller=5, buyers=20
        )
        config = SandboxConfig(
            apps=[AppConfig(app_id=DEMO_APP_ID, callback_url=callback_url)],
            marketplace=market.model_copy(update=overrides.pop("marketplace", {})),
            notifier=notifier,
            **overrides,
        )
        ctx = run_sandbox(config)
        stack.append(ctx)
        return await ctx.__aenter__()

    yield start
    for ctx in reversed(stack):
        await ctx.__aexit__(None, None, None)
