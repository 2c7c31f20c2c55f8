import asyncio
import base64
import json

import pytest
from aiohttp.test_utils import TestClient, TestServer

from peepers_auth.app import create_app
from peepers_auth.settings import Settings
from peepers_common.errors import PublishError
from peepers_common.kafka import Headers, Published
from peepers_common.testing import InMemoryEventPublisher
from tests.unit.auth.fakes import (
    FakeMlOAuth,
    InMemoryLoginStates,
    InMemorySellerStore,
    InMemorySessions,
)
from tests.unit.auth.flows import SERVICE_SECRET, Client, Clock, login

SELLER = 3000000001
TOKEN_URL = f"/internal/sellers/{SELLER}/token"
REFRESH_URL = f"/internal/sellers/{SELLER}/token/refresh"


def _basic(name: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{name}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


AUTH = _basic("catalog", SERVICE_SECRET)


class TestServiceCredentials:
    @pytest.mark.parametrize(
        "headers",
        [
            {},
            _basic("catalog", "wrong"),
            _basic("orders", SERVICE_SECRET),
            _basic("catalog", ""),
            {"Authorization": "Basic !!!not-base64"},
            {"Authorization": f"Bearer {SERVICE_SECRET}"},
        ],
        ids=["none", "wrong-secret", "unknown-service", "empty-secret", "garbage", "bearer"],
    )
    async def test_callers_without_valid_service_credentials_get_401(
        self, client: Client, ml: FakeMlOAuth, headers: dict[str, str]
    ) -> None:
        await login(client, ml)
        response = await client.get(TOKEN_URL, headers=headers)
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Basic")
        assert (await response.json())["error"] == "unauthorized"
        assert ml.access_token not in await response.text()


class TestTokenBroker:
    async def test_a_fresh_token_is_returned_without_refreshing(
        self, client: Client, ml: FakeMlOAuth
    ) -> None:
        await login(client, ml)
        response = await client.get(TOKEN_URL, headers=AUTH)
        body = await response.json()
        assert response.status == 200
        assert body["access_token"] == ml.access_token
        assert body["expires_in"] == 21600
        assert response.headers["Cache-Control"] == "no-store"
        assert ml.refresh_calls == 0

    async def test_a_token_inside_the_margin_is_refreshed_before_it_is_handed_out(
        self, client: Client, ml: FakeMlOAuth, clock: Clock
    ) -> None:
        await login(client, ml)
        old = ml.access_token
        clock.now += 21600 - 60  # one minute left, inside the 5-minute margin
        body = await (await client.get(TOKEN_URL, headers=AUTH)).json()
        assert ml.refresh_calls == 1
        assert body["access_token"] == ml.access_token != old

    async def test_concurrent_callers_share_one_refresh(
        self, client: Client, ml: FakeMlOAuth, clock: Clock
    ) -> None:
        await login(client, ml)
        clock.now += 21600
        ml.gate = asyncio.Event()
        calls = [asyncio.ensure_future(client.get(TOKEN_URL, headers=AUTH)) for _ in range(30)]
        await asyncio.sleep(0)  # let the requests start before the refresh may finish
        ml.gate.set()
        bodies = [await (await call).json() for call in calls]
        assert ml.refresh_calls == 1
        assert {b["access_token"] for b in bodies} == {ml.access_token}

    async def test_a_forced_refresh_with_an_already_replaced_token_does_not_refresh(
        self, client: Client, ml: FakeMlOAuth
    ) -> None:
        await login(client, ml)
        response = await client.post(
            REFRESH_URL, headers=AUTH, json={"stale_token": "APP_USR-an-older-one"}
        )
        assert (await response.json())["access_token"] == ml.access_token
        assert ml.refresh_calls == 0

    async def test_a_forced_refresh_with_the_current_token_refreshes_once(
        self, client: Client, ml: FakeMlOAuth
    ) -> None:
        await login(client, ml)
        stale = ml.access_token
        first, second = await asyncio.gather(
            client.post(REFRESH_URL, headers=AUTH, json={"stale_token": stale}),
            client.post(REFRESH_URL, headers=AUTH, json={"stale_token": stale}),
        )
        tokens = {(await first.json())["access_token"], (await second.json())["access_token"]}
        assert tokens == {ml.access_token}
        assert stale not in tokens
        assert ml.refresh_calls == 1

    async def test_a_forced_refresh_without_a_token_always_refreshes(
        self, client: Client, ml: FakeMlOAuth
    ) -> None:
        await login(client, ml)
        await client.post(REFRESH_URL, headers=AUTH)
        assert ml.refresh_calls == 1

    async def test_an_unknown_seller_is_404(self, client: Client) -> None:
        response = await client.get("/internal/sellers/42/token", headers=AUTH)
        assert response.status == 404
        assert (await response.json())["error"] == "seller_not_connected"

    async def test_invalid_grant_marks_the_seller_reauth_required_with_one_event(
        self,
        client: Client,
        ml: FakeMlOAuth,
        clock: Clock,
        publisher: InMemoryEventPublisher,
        sellers: InMemorySellerStore,
    ) -> None:
        await login(client, ml)
        ml.revoked = True
        clock.now += 21600
        responses = await asyncio.gather(*(client.get(TOKEN_URL, headers=AUTH) for _ in range(10)))
        assert {r.status for r in responses} == {409}
        assert {(await r.json())["error"] for r in responses} == {"reauth_required"}
        assert ml.refresh_calls == 1
        types = [json.loads(r.value)["type"] for r in publisher.records]
        assert types == ["seller.connected", "seller.reauth_required"]
        record = sellers.records[SELLER]
        assert (record.status, record.tokens, record.outbox) == ("reauth_required", None, ())
        dashboard = await (await client.get("/auth/dashboard")).text()
        assert "Needs re-authorisation" in dashboard

    async def test_a_seller_who_logs_in_again_after_reauth_gets_tokens_again(
        self, client: Client, ml: FakeMlOAuth, clock: Clock, publisher: InMemoryEventPublisher
    ) -> None:
        await login(client, ml)
        ml.revoked = True
        clock.now += 21600
        assert (await client.get(TOKEN_URL, headers=AUTH)).status == 409
        ml.revoked = False
        await login(client, ml)
        body = await (await client.get(TOKEN_URL, headers=AUTH)).json()
        assert body["access_token"] == ml.access_token
        assert json.loads(publisher.records[-1].value)["type"] == "seller.reconnected"


class FailingPublisher(InMemoryEventPublisher):
    def __init__(self) -> None:
        super().__init__()
        self.failing = True

    async def publish(
        self, topic: str, *, key: bytes, value: bytes, headers: Headers = ()
    ) -> Published:
        if self.failing:
            msg = "Kafka is down"
            raise PublishError(msg)
        return await super().publish(topic, key=key, value=value, headers=headers)


async def test_an_event_kafka_refused_is_kept_and_republished_with_the_same_id(
    settings: Settings, ml: FakeMlOAuth, sellers: InMemorySellerStore, clock: Clock
) -> None:
    publisher = FailingPublisher()
    app = create_app(
        settings,
        ml=ml,
        publisher=publisher,
        states=InMemoryLoginStates(),
        sessions=InMemorySessions(),
        sellers=sellers,
        clock=clock,
    )
    async with TestClient(TestServer(app)) as client:
        await login(client, ml)  # the login itself succeeds
        [pending] = sellers.records[SELLER].outbox
        publisher.failing = False
        clock.now += 60  # past the retry delay, so the next reader republishes
        assert (await client.get(TOKEN_URL, headers=AUTH)).status == 200
    [record] = publisher.records
    assert json.loads(record.value)["event_id"] == str(pending.event_id)
    assert sellers.records[SELLER].outbox == ()


class LosingSellerStore(InMemorySellerStore):
    """Stores nothing while ``losing``: a refresh whose record never reached the changelog."""

    def __init__(self) -> None:
        super().__init__()
        self.losing = False

    async def put(self, record, *, expected_version, lock_token=None, durable=False):
        if self.losing:
            msg = "the changelog did not acknowledge the record"
            raise PublishError(msg)
        return await super().put(
            record, expected_version=expected_version, lock_token=lock_token, durable=durable
        )


async def test_tokens_ml_refreshed_but_never_stored_leave_the_seller_reauth_required(
    settings: Settings, ml: FakeMlOAuth, clock: Clock, publisher: InMemoryEventPublisher
) -> None:
    """docs/auth.md, "A crash mid-refresh": the window between ML's answer and the write."""
    sellers = LosingSellerStore()
    app = create_app(
        settings,
        ml=ml,
        publisher=publisher,
        states=InMemoryLoginStates(),
        sessions=InMemorySessions(),
        sellers=sellers,
        clock=clock,
    )
    async with TestClient(TestServer(app)) as client:
        await login(client, ml)
        clock.now += 21600
        sellers.losing = True
        lost = await client.get(TOKEN_URL, headers=AUTH)
        assert lost.status == 503  # never handed out: the caller retries
        assert ml.access_token not in await lost.text()
        sellers.losing = False
        # The stored refresh token is the one ML just retired: the next refresh is refused.
        responses = await asyncio.gather(*(client.get(TOKEN_URL, headers=AUTH) for _ in range(5)))
    assert {r.status for r in responses} == {409}
    assert ml.refresh_calls == 2
    types = [json.loads(r.value)["type"] for r in publisher.records]
    assert types == ["seller.connected", "seller.reauth_required"]
