from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from peepers_auth.app import create_app
from peepers_auth.crypto import TokenCipher
from peepers_auth.settings import OAuthSettings, Settings
from peepers_common.settings import MlApiSettings
from peepers_common.testing import InMemoryEventPublisher
from tests.unit.auth.fakes import (
    FakeMlOAuth,
    InMemoryLoginStates,
    InMemorySellerStore,
    InMemorySessions,
)
from tests.unit.auth.flows import SERVICE_SECRET, Client, Clock


@pytest.fixture
def settings() -> Settings:
    return Settings(
        ml=MlApiSettings(base_url="http://ml.invalid", app_id=1234, client_secret=SecretStr("s")),
        oauth=OAuthSettings(
            redirect_uri="http://localhost:8081/auth/callback",
            auth_base_urls={"MLB": "http://auth.ml.invalid", "MLA": "http://auth-ar.ml.invalid"},
        ),
        token_keys=[SecretStr(TokenCipher.generate_key())],
        service_credentials={"catalog": SecretStr(SERVICE_SECRET)},
        public_base_url="http://localhost:8081",
    )


@pytest.fixture
def ml() -> FakeMlOAuth:
    return FakeMlOAuth()


@pytest.fixture
def publisher() -> InMemoryEventPublisher:
    return InMemoryEventPublisher()


@pytest.fixture
def sellers() -> InMemorySellerStore:
    return InMemorySellerStore()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def client(
    settings: Settings,
    ml: FakeMlOAuth,
    publisher: InMemoryEventPublisher,
    sellers: InMemorySellerStore,
    clock: Clock,
) -> AsyncIterator[Client]:
    app = create_app(
        settings,
        ml=ml,
        publisher=publisher,
        states=InMemoryLoginStates(),
        sessions=InMemorySessions(),
        sellers=sellers,
        topic="test.sellers",
        clock=clock,
    )
    async with TestClient(TestServer(app)) as test_client:
        yield test_client
