import pytest
import redis.asyncio as aioredis
from redis.exceptions import NoPermissionError

from peepers_auth.settings import Settings as AuthSettings
from peepers_catalog.settings import Settings as CatalogSettings
from peepers_common.namespaces import Namespace, connect_redis
from peepers_common.settings import RedisSettings
from peepers_ingest.settings import Settings as IngestSettings
from peepers_messages.settings import Settings as MessagesSettings
from peepers_orders.settings import Settings as OrdersSettings
from tests.support import unique

SERVICE_REDIS: dict[str, RedisSettings] = {
    "ingest": IngestSettings().redis,
    "auth": AuthSettings().redis,
    "orders": OrdersSettings().redis,
    "catalog": CatalogSettings().redis,
    "messages": MessagesSettings().redis,
}


@pytest.mark.parametrize("service", SERVICE_REDIS)
async def test_a_service_writes_its_own_namespace_but_not_anothers(
    service: str, redis_admin: aioredis.Redis
) -> None:
    settings = SERVICE_REDIS[service]
    assert settings.username == service
    assert settings.password is not None, "run scripts/stack up and source .stack/env"
    client = connect_redis(settings)
    ns = Namespace(service, scope=unique())
    other = next(s for s in SERVICE_REDIS if s != service)
    try:
        await client.set(ns.key("probe"), b"mine", ex=60)
        assert await client.get(ns.key("probe")) == b"mine"
        with pytest.raises(NoPermissionError):
            await client.set(Namespace(other, scope=unique()).key("probe"), b"theirs")
        with pytest.raises(NoPermissionError):
            await client.set("unprefixed-probe", b"x")
        # KEYS would block Redis on a big keyspace; no service may run it.
        with pytest.raises(NoPermissionError):
            await client.keys(ns.key("*"))
    finally:
        await client.delete(ns.key("probe"))
        await client.aclose()
    assert await redis_admin.exists(ns.key("probe")) == 0


async def test_every_service_may_use_the_shared_rate_limit_keys() -> None:
    client = connect_redis(SERVICE_REDIS["catalog"])
    key = f"ratelimit:{unique()}"
    try:
        assert await client.incr(key) == 1
    finally:
        await client.delete(key)
        await client.aclose()


async def test_namespace_helpers_read_and_write_hashes_and_sets() -> None:
    client = connect_redis(SERVICE_REDIS["orders"])
    ns = Namespace("orders", scope=unique())
    try:
        await client.hset(ns.key("order", 1), mapping={"status": "paid", "total": "10.5"})
        await client.sadd(ns.key("seller", 7, "orders"), "1")
        assert await client.hgetall(ns.key("order", 1)) == {b"status": b"paid", b"total": b"10.5"}
        assert await client.smembers(ns.key("seller", 7, "orders")) == {b"1"}
    finally:
        await client.delete(ns.key("order", 1), ns.key("seller", 7, "orders"))
        await client.aclose()
