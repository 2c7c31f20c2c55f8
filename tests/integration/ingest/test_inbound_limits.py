from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from peepers_common.errors import ConfigurationError
from peepers_common.namespaces import connect_redis
from peepers_ingest.inbound_limits import (
    InboundRateLimit,
    Rate,
    RedisRateLimiter,
    application_level,
    endpoint_level,
    user_level,
)
from peepers_ingest.settings import Settings as IngestSettings
from tests.support import unique


@pytest.fixture
async def service_redis() -> AsyncIterator[aioredis.Redis]:
    """Redis as a service's ACL user, which may touch only its namespace and ratelimit:*."""
    client = connect_redis(IngestSettings().redis)
    yield client
    await client.aclose()


def limiter(client: aioredis.Redis) -> RedisRateLimiter:
    return RedisRateLimiter(client, prefix=f"ratelimit:{unique()}:")


async def ok(_request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def app_with(limit: InboundRateLimit) -> web.Application:
    app = web.Application(middlewares=[limit.middleware])
    app.router.add_get("/a", ok)
    app.router.add_get("/b", ok)
    return app


def by_header(request: web.Request) -> str | None:
    return request.headers.get("X-User")


async def test_a_burst_over_the_rate_is_refused_with_retry_after(service_redis) -> None:
    rl = limiter(service_redis)
    checks = [("user", "u1", Rate(5, per_s=60))]
    results = [await rl.hit(checks) for _ in range(7)]
    assert results[:5] == [None] * 5
    refused = results[5]
    assert refused is not None
    assert refused.level == "user"
    assert 11 <= refused.retry_after_s <= 12.1  # one request every 12 s


async def test_a_refusal_at_one_level_spends_nothing_at_the_others(service_redis) -> None:
    rl = limiter(service_redis)
    app = ("application", "svc", Rate(3, per_s=60))
    tight = ("user", "noisy", Rate(1, per_s=60))
    assert await rl.hit([app, tight]) is None
    for _ in range(5):
        refusal = await rl.hit([app, tight])
        assert refusal is not None
        assert refusal.level == "user"
    # The application level was charged once only: two more callers still fit.
    assert await rl.hit([app, ("user", "a", Rate(1, per_s=60))]) is None
    assert await rl.hit([app, ("user", "b", Rate(1, per_s=60))]) is None
    refusal = await rl.hit([app, ("user", "c", Rate(1, per_s=60))])
    assert refusal is not None
    assert refusal.level == "application"


async def test_replicas_share_one_budget(service_redis) -> None:
    prefix = f"ratelimit:{unique()}:"
    second = connect_redis(IngestSettings().redis)
    try:
        replicas = [
            RedisRateLimiter(service_redis, prefix=prefix),
            RedisRateLimiter(second, prefix=prefix),
        ]
        checks = [("user", "u", Rate(10, per_s=60))]
        admitted = sum([await replicas[i % 2].hit(checks) is None for i in range(30)])
    finally:
        await second.aclose()
    assert admitted == 10


async def test_the_middleware_checks_application_then_user_then_endpoint(service_redis) -> None:
    limit = InboundRateLimit(
        limiter(service_redis),
        [
            application_level(Rate(100, per_s=60)),
            user_level(Rate(3, per_s=60), by_header),
            endpoint_level(Rate(2, per_s=60), by_header),
        ],
        service="test",
    )
    async with TestClient(TestServer(app_with(limit))) as client:
        statuses = [(await client.get("/a", headers={"X-User": "ana"})).status for _ in range(2)]
        assert statuses == [200, 200]
        refused = await client.get("/a", headers={"X-User": "ana"})
        assert refused.status == 429
        body: dict[str, Any] = await refused.json()
        assert body["level"] == "endpoint"
        assert int(refused.headers["Retry-After"]) >= 1
        assert (await client.get("/b", headers={"X-User": "ana"})).status == 200
        refused = await client.get("/b", headers={"X-User": "ana"})
        assert (await refused.json())["level"] == "user"
        assert (await client.get("/a", headers={"X-User": "bob"})).status == 200
        # An anonymous request counts only at the application level.
        assert (await client.get("/a")).status == 200


async def test_with_redis_down_requests_pass_when_failing_open() -> None:
    dead = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    try:
        limit = InboundRateLimit(
            RedisRateLimiter(dead, prefix="ratelimit:x:"),
            [application_level(Rate(1))],
            service="test",
        )
        closed = InboundRateLimit(
            RedisRateLimiter(dead, prefix="ratelimit:x:"),
            [application_level(Rate(1))],
            service="test",
            fail_open=False,
        )
        async with TestClient(TestServer(app_with(limit))) as client:
            assert (await client.get("/a")).status == 200
        async with TestClient(TestServer(app_with(closed))) as client:
            assert (await client.get("/a")).status == 503
    finally:
        await dead.aclose()


def test_keys_outside_the_shared_rate_limit_prefix_are_refused(service_redis) -> None:
    with pytest.raises(ConfigurationError):
        RedisRateLimiter(service_redis, prefix="ingest:limits:")
