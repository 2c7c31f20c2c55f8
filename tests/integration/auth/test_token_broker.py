import asyncio
import itertools
import logging
import re
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from peepers_catalog.settings import Settings as CatalogSettings
from peepers_common.errors import ConfigurationError, ReauthRequired
from peepers_common.ml import HttpMlApi, OutboundLimiter, ml_session
from peepers_common.ml.broker_tokens import BrokerTokenProvider, TokenBrokerSettings
from peepers_common.namespaces import connect_redis
from peepers_common.settings import KafkaSettings, MlApiSettings
from peepers_sandbox.config import DEMO_APP_ID, DEMO_CLIENT_SECRET
from tests.integration.auth.harness import (
    SELLER,
    SERVICE,
    SERVICE_SECRET,
    AuthStack,
    auth_stack,
    broker_token,
    json_of,
    login,
    ml_me,
    raw_values,
    read_all,
)
from tests.support import unique, wait_until

SIX_HOURS = 21600


async def _ml_refresh(stack: AuthStack, refresh_token: str) -> tuple[int, Any]:
    """Spend a refresh token at the sandbox directly, as an attacker or a bug would."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{stack.sandbox.url}/oauth/token",
            data={
                "grant_type": "refresh_token",
                "client_id": str(DEMO_APP_ID),
                "client_secret": DEMO_CLIENT_SECRET,
                "refresh_token": refresh_token,
            },
        ) as response,
    ):
        return response.status, await response.json()


async def test_three_replicas_and_sixty_callers_spend_an_expired_refresh_token_once(
    kafka: KafkaSettings,
) -> None:
    async with auth_stack(kafka, replicas=3) as stack:
        async with stack.browser() as browser:
            await login(stack, browser)
        before = await stack.record()
        assert before is not None
        assert before.tokens is not None
        old_access = before.tokens.access_token.get_secret_value()
        old_refresh = before.tokens.refresh_token.get_secret_value()
        await stack.advance(SIX_HOURS + 1)  # the access token has just expired
        assert await ml_me(stack, old_access) == 401
        oauth_before = await stack.oauth_calls()

        async with aiohttp.ClientSession() as http:
            replicas = itertools.cycle(stack.urls)
            answers = await asyncio.gather(
                *(broker_token(http, stack, next(replicas)) for _ in range(60))
            )

        assert await stack.oauth_calls() - oauth_before == 1  # exactly one refresh reached ML
        assert {status for status, _ in answers} == {200}
        tokens = {body["access_token"] for _, body in answers}
        assert len(tokens) == 1
        [new_access] = tokens
        assert new_access != old_access
        assert await ml_me(stack, new_access) == 200
        status, body = await _ml_refresh(stack, old_refresh)
        assert (status, body["error"]) == (400, "invalid_grant")  # the old one is dead
        after = await stack.record()
        assert after is not None
        assert after.refreshes == 1
        assert after.version == before.version + 1


async def test_a_revoked_seller_ends_reauth_required_with_one_event(
    kafka: KafkaSettings,
) -> None:
    async with auth_stack(kafka, replicas=3) as stack:
        async with stack.browser() as browser:
            await login(stack, browser)
        assert await stack.sandbox.admin.revoke(SELLER) == 1
        await stack.advance(SIX_HOURS + 1)
        async with aiohttp.ClientSession() as http:
            replicas = itertools.cycle(stack.urls)
            answers = await asyncio.gather(
                *(broker_token(http, stack, next(replicas)) for _ in range(30))
            )
            assert {status for status, _ in answers} == {409}
            assert {body["error"] for _, body in answers} == {"reauth_required"}
            # Asking again changes nothing: no second refresh, no second event.
            assert (await broker_token(http, stack, stack.urls[1]))[0] == 409
        record = await stack.record()
        assert record is not None
        assert (record.status, record.tokens) == ("reauth_required", None)
        events = [json_of(r) for r in await read_all(kafka, stack.topic)]
        assert [e["type"] for e in events] == ["seller.connected", "seller.reauth_required"]
        assert events[1]["seller_id"] == SELLER
        assert events[1]["reason"] == "invalid_grant"

        async def gauge_counts_the_seller() -> bool:
            # What PeepersAuthSellersNeedReauth queries, as Prometheus scrapes it.
            async with aiohttp.ClientSession() as http, http.get(f"{stack.url}/metrics") as page:
                return "\npeepers_auth_sellers_reauth_required 1.0\n" in await page.text()

        await wait_until(gauge_counts_the_seller)


async def _logged_in(stack: AuthStack) -> TokenBrokerSettings:
    """The seller logs in; the broker settings a worker of the stack would have."""
    async with stack.browser() as browser:
        await login(stack, browser)
    return TokenBrokerSettings(url=stack.url, service=SERVICE, secret=SecretStr(SERVICE_SECRET))


async def test_the_broker_provider_gets_a_token_ml_accepts_and_refreshes_after_a_401(
    kafka: KafkaSettings,
) -> None:
    async with auth_stack(kafka) as stack:
        settings = await _logged_in(stack)
        async with aiohttp.ClientSession() as http:
            provider = BrokerTokenProvider(http, settings)
            token = await provider.access_token(SELLER)
            assert await ml_me(stack, token) == 200
            assert await provider.access_token(SELLER) == token  # kept in process
            # ML answered 401 to it (say, the seller changed their password).
            await stack.sandbox.admin.expire_token(token)
            fresh = await provider.refresh(SELLER, token)
            assert fresh != token
            assert await ml_me(stack, fresh) == 200
            # A second replica asking with the same stale token gets the same new token.
            assert await provider.refresh(SELLER, token) == fresh


async def test_the_broker_provider_maps_reauth_and_bad_credentials(
    kafka: KafkaSettings,
) -> None:
    async with auth_stack(kafka) as stack, aiohttp.ClientSession() as http:
        good = BrokerTokenProvider(
            http,
            TokenBrokerSettings(url=stack.url, service=SERVICE, secret=SecretStr(SERVICE_SECRET)),
        )
        with pytest.raises(ReauthRequired):
            await good.access_token(SELLER)  # never connected
        bad = BrokerTokenProvider(
            http, TokenBrokerSettings(url=stack.url, service=SERVICE, secret=SecretStr("x"))
        )
        with pytest.raises(ConfigurationError, match="AUTH_SERVICE_CREDENTIALS"):
            await bad.access_token(SELLER)


async def test_no_token_reaches_the_logs_raw_redis_or_the_raw_changelog(
    kafka: KafkaSettings, redis_admin: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with auth_stack(kafka, replicas=2) as stack:
        async with stack.browser() as browser:
            await login(stack, browser)
            await stack.advance(SIX_HOURS + 1)
            async with aiohttp.ClientSession() as http:
                assert (await broker_token(http, stack, stack.urls[1]))[0] == 200
                async with http.post(
                    f"{stack.url}/internal/sellers/{SELLER}/token/refresh",
                    headers=stack.service_auth(),
                ) as forced:
                    assert forced.status == 200
                tokens = stack.known_tokens()  # revoking drops them from the sandbox
                await stack.sandbox.admin.revoke(SELLER)
                async with http.post(
                    f"{stack.url}/internal/sellers/{SELLER}/token/refresh",
                    headers=stack.service_auth(),
                ) as refused:
                    assert refused.status == 409
            dump = b"\n".join(await raw_values(redis_admin, stack.namespace))
            # The changelog topic as a consumer of it sees it: keys, values, headers.
            changelog = await read_all(kafka, stack.changelog_topic)
        tokens |= stack.known_tokens()
    assert len(changelog) >= 3  # the login, two refreshes, the reauth_required mark
    dump += b"\n".join(
        b"\n".join([r.key or b"", r.value or b"", *(value for _, value in r.headers)])
        for r in changelog
    )
    assert len(tokens) >= 4  # three access tokens and the live refresh token at least
    logged = "\n".join(
        [
            caplog.text,
            *(str(r.args) for r in caplog.records),
            *(r.getMessage() for r in caplog.records),
        ]
    )
    assert "refreshed" in logged  # the flow did log, just never a token
    for token in tokens:
        assert token not in logged
        assert token.encode() not in dump
    assert b"APP_USR-" not in dump
    assert b"TG-" not in dump
    # Nor any other string shaped like an ML token or code (spent ones included).
    assert not re.search(r"\b(APP_USR|TG)-[0-9A-Za-z]{6,}", logged)


async def test_a_call_holding_an_older_token_than_auth_survives_every_token_expiring_at_once(
    kafka: KafkaSettings,
) -> None:
    # A worker's cached token is older than auth's current one (another replica's call
    # refreshed meanwhile; ML keeps older tokens valid). Then every token expires at once:
    # auth answers the worker's report of its old token with its current one, refused too.
    async with auth_stack(kafka) as stack:
        settings = await _logged_in(stack)
        ml = MlApiSettings(
            base_url=stack.sandbox.url, app_id=DEMO_APP_ID, app_limit=None, family_limits={}
        )
        async with ml_session(ml) as session:
            worker, other = (
                BrokerTokenProvider(session, settings),
                BrokerTokenProvider(session, settings),
            )
            old = await worker.access_token(SELLER)
            await stack.advance(SIX_HOURS + 1)
            current = await other.access_token(SELLER)  # auth refreshed: a newer token
            assert current != old
            await stack.sandbox.admin.expire_token(current)  # and now every one is refused
            redis = connect_redis(CatalogSettings().redis)
            try:
                api = HttpMlApi(session, ml, worker, OutboundLimiter(redis, ml, scope=unique("ml")))
                me = await api.get_me(seller_id=SELLER)
            finally:
                await redis.aclose()
        assert me.id == SELLER
