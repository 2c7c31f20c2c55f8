"""Issue 18's re-logins: a refresh ML answered, whose tokens then missed the view.

ML (the sandbox) retires a refresh token the moment it answers a refresh. The proof run
saw sellers marked ``reauth_required`` after token expiry overlapping Redis losses and
kills of auth: the refreshed tokens were dropped because the view was gone when they
were written (the write's pre-check said it would lose), and the next refresh spent the
retired token. These play that on the real Kafka, a Redis of the test's own and the
sandbox, with ML's token endpoint held slow so that the loss lands mid-refresh.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from peepers_common.settings import KafkaSettings
from tests.integration.auth.harness import (
    SELLER,
    AuthStack,
    auth_stack,
    broker_token,
    json_of,
    login,
    ml_me,
    read_all,
)
from tests.integration.auth.redis_server import private_redis
from tests.support import wait_until

SIX_HOURS = 21600
TOKEN_ENDPOINT_MS = 1500


async def _event_types(kafka: KafkaSettings, stack: AuthStack) -> list[str]:
    return [json_of(record)["type"] for record in await read_all(kafka, stack.topic)]


async def _served(http: aiohttp.ClientSession, stack: AuthStack) -> str:
    """The seller's token once auth answers 200 (a request may meet Redis coming back)."""
    answers: list[tuple[int, Any]] = []

    async def ok() -> bool:
        answers.append(await broker_token(http, stack))
        return answers[-1][0] == 200

    await wait_until(ok, timeout_s=30, every_s=0.2)
    token: str = answers[-1][1]["access_token"]
    return token


@pytest.mark.integration
@pytest.mark.timeout(90)
@pytest.mark.parametrize("how", ["flushall", "restart"])
async def test_redis_lost_while_ml_answers_a_refresh_keeps_the_new_tokens(
    kafka: KafkaSettings, tmp_path: Path, how: str
) -> None:
    async with (
        private_redis(tmp_path) as server,
        auth_stack(kafka, redis=server.settings) as stack,
        aiohttp.ClientSession() as http,
    ):
        async with stack.browser() as browser:
            await login(stack, browser)
        status, body = await broker_token(http, stack)
        assert status == 200, body
        expired = body["access_token"]
        await stack.advance(SIX_HOURS + 1)
        await stack.sandbox.admin.set_faults(latency_ms=TOKEN_ENDPOINT_MS, families=["oauth"])
        calls = await stack.oauth_calls()

        refreshing = asyncio.create_task(broker_token(http, stack))

        async def ml_has_the_request() -> bool:
            return await stack.oauth_calls() > calls

        await wait_until(ml_has_the_request)  # counted before the sandbox's delay
        if how == "flushall":
            await server.flushall()
        else:
            await server.restart()
        status, body = await refreshing
        await stack.sandbox.admin.clear_faults()
        # A restarted Redis may still be unreachable when ML answers: 503, and the next
        # caller finds the tokens restored from the changelog.
        assert status in (200, 503), body
        fresh = body["access_token"] if status == 200 else await _served(http, stack)

        assert fresh != expired
        assert await ml_me(stack, fresh) == 200
        assert await stack.oauth_calls() == calls + 1  # ML spent the refresh token once
        record = await stack.record()
        assert record is not None
        assert record.status == "connected"
        assert "seller.reauth_required" not in await _event_types(kafka, stack)


@pytest.mark.integration
@pytest.mark.timeout(60)
async def test_a_view_that_missed_a_logged_refresh_catches_up_instead_of_a_relogin(
    kafka: KafkaSettings,
) -> None:
    """The view still holds the spent refresh token; the changelog holds its successor.

    As after auth was killed between the changelog's ack and the view's write, or Redis
    did not answer that write: ML refuses the old token, auth replays the changelog.
    """
    async with auth_stack(kafka) as stack, aiohttp.ClientSession() as http:
        async with stack.browser() as browser:
            await login(stack, browser)
        view = stack.store
        spent = await view.fields(SELLER)
        assert spent is not None
        await stack.advance(SIX_HOURS + 1)
        status, body = await broker_token(http, stack)
        assert status == 200, body
        refreshed = body["access_token"]
        # The view goes back to the record before the refresh (its spent refresh token).
        key = stack.namespace.key("seller", SELLER)
        await stack.redis.delete(key)
        assert await view.put_fields(spent, expected_version=0)
        calls = await stack.oauth_calls()

        async with http.post(
            f"{stack.url}/internal/sellers/{SELLER}/token/refresh",
            headers=stack.service_auth(),
            json={"stale_token": _access_token_in(stack, spent)},
        ) as response:
            answer = await response.json()
            assert response.status == 200, answer

        assert answer["access_token"] == refreshed  # the logged successor, not a re-login
        assert await ml_me(stack, refreshed) == 200
        assert await stack.oauth_calls() == calls + 1  # the refused attempt only
        record = await stack.record()
        assert record is not None
        assert record.status == "connected"
        assert "seller.reauth_required" not in await _event_types(kafka, stack)


def _access_token_in(stack: AuthStack, fields: Any) -> str:
    """The access token sealed in a stored record."""
    record = stack.store.decode(fields)
    assert record.tokens is not None
    return record.tokens.access_token.get_secret_value()
