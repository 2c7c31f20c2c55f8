"""Issue 13's "auth survives a flush": a Redis of the test's own is flushed or restarted.

Three auth replicas and three connected sellers. After the loss, every seller still gets
its token with no new login and no refresh (the view comes back from the changelog), and
the next refresh still reaches ML exactly once for 60 concurrent callers.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import REGISTRY

from peepers_common.settings import KafkaSettings
from tests.integration.auth.harness import SELLER, AuthStack, auth_stack, broker_token, ml_me
from tests.integration.auth.redis_server import PrivateRedis, private_redis
from tests.support import wait_until

SIX_HOURS = 21600
SELLERS = [SELLER, SELLER + 1, SELLER + 2]


async def _login_as(stack: AuthStack, seller_id: int) -> None:
    """The whole browser login, approving on the sandbox as ``seller_id``."""
    async with stack.browser() as browser:
        async with browser.get(f"{stack.url}/auth/login", allow_redirects=False) as started:
            assert started.status == 302
            authorize = f"{started.headers['Location']}&login_as={seller_id}"
        async with browser.get(authorize) as done:
            assert done.status == 200, await done.text()
            assert done.url.path == "/auth/dashboard"


def _restores(stack: AuthStack) -> float:
    """The replicas' restores of the view from the changelog (they run in this process)."""
    labels = {"topic": stack.changelog_topic, "outcome": "restored"}
    return REGISTRY.get_sample_value("peepers_changelog_restores_total", labels) or 0.0


async def _lose(server: PrivateRedis, how: str) -> None:
    if how == "flushall":
        await server.flushall()
    else:
        await server.restart()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("how", ["flushall", "restart"])
async def test_every_seller_keeps_its_token_and_the_next_refresh_happens_once(
    kafka: KafkaSettings, tmp_path: Path, how: str
) -> None:
    async with (
        private_redis(tmp_path) as server,
        auth_stack(kafka, replicas=3, redis=server.settings, sellers=len(SELLERS)) as stack,
        aiohttp.ClientSession() as http,
    ):
        for seller_id in SELLERS:
            await _login_as(stack, seller_id)
        before = {}
        for seller_id in SELLERS:
            status, body = await broker_token(http, stack, stack.urls[0], seller_id)
            assert status == 200, body
            before[seller_id] = body["access_token"]
        oauth_before = await stack.oauth_calls()
        restores_before = _restores(stack)

        # Not "the view is gone" right after: a replica's check may restore it first.
        await _lose(server, how)

        after: dict[int, str] = {}

        async def served() -> bool:
            # A restarted Redis drops the replicas' connections: a request may meet one
            # and answer 503 once; the next one reconnects.
            for seller_id, url in zip(SELLERS, stack.urls, strict=True):
                status, body = await broker_token(http, stack, url, seller_id)
                if status != 200:
                    return False
                after[seller_id] = body["access_token"]
            return True

        await wait_until(served, timeout_s=30)
        assert _restores(stack) > restores_before  # the view came from the changelog
        assert after == before  # the same tokens: no new login, no refresh
        assert await stack.oauth_calls() == oauth_before
        for token in after.values():
            assert await ml_me(stack, token) == 200

        await stack.advance(SIX_HOURS + 1)  # every access token has just expired
        replicas = itertools.cycle(stack.urls)
        answers = await asyncio.gather(
            *(broker_token(http, stack, next(replicas)) for _ in range(60))
        )
        assert await stack.oauth_calls() - oauth_before == 1  # exactly one refresh reached ML
        assert {status for status, _ in answers} == {200}
        [fresh] = {body["access_token"] for _, body in answers}
        assert fresh != before[SELLER]
        assert await ml_me(stack, fresh) == 200

        async def all_ready() -> bool:
            # A replica whose check met the restart retries it within seconds.
            for url in stack.urls:
                async with http.get(f"{url}/readyz") as ready:
                    if (ready.status, await ready.json()) != (200, {"status": "ready"}):
                        return False
            return True

        await wait_until(all_ready)
