import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from peepers_auth.adapters.redis_store import RedisLoginStates, RedisSellerStore
from peepers_auth.crypto import TokenCipher
from peepers_auth.models import LoginState, SealedTokens, SellerRecord
from peepers_auth.settings import Settings
from peepers_common.namespaces import Namespace, connect_redis
from tests.support import unique

SELLER = 77


@pytest.fixture
async def auth_redis() -> AsyncIterator[aioredis.Redis]:
    """Redis as the auth service's ACL user (only auth:* keys)."""
    client = connect_redis(Settings().redis)
    yield client
    await client.aclose()


def _record(version: int, access: str = "APP_USR-1-010101-aa-77") -> SellerRecord:
    return SellerRecord(
        seller_id=SELLER,
        version=version,
        status="connected",
        nickname="N",
        site_id="MLB",
        tokens=SealedTokens(
            seller_id=SELLER,
            access_token=SecretStr(access),
            refresh_token=SecretStr("TG-0123456789abcdef-77"),
        ),
        expires_at=1.0,
        connected_at=1.0,
        updated_at=1.0,
    )


def _key() -> SecretStr:
    return SecretStr(TokenCipher.generate_key())


async def test_a_write_on_a_stale_version_is_refused(auth_redis: aioredis.Redis) -> None:
    store = RedisSellerStore(auth_redis, Namespace("auth", scope=unique()), TokenCipher([_key()]))
    assert await store.put(_record(1), expected_version=0)
    assert not await store.put(_record(2, "APP_USR-1-010101-bb-77"), expected_version=0)
    assert await store.put(_record(2, "APP_USR-1-010101-cc-77"), expected_version=1)
    stored = await store.get(SELLER)
    assert stored is not None
    assert stored.version == 2
    assert stored.tokens is not None
    assert stored.tokens.access_token.get_secret_value() == "APP_USR-1-010101-cc-77"


async def test_a_fenced_write_needs_the_lock_it_names(auth_redis: aioredis.Redis) -> None:
    store = RedisSellerStore(auth_redis, Namespace("auth", scope=unique()), TokenCipher([_key()]))
    await store.put(_record(1), expected_version=0)
    lock = await store.acquire_lock(SELLER, ttl_s=5)
    assert lock is not None
    assert await store.acquire_lock(SELLER, ttl_s=5) is None
    await store.release_lock(SELLER, "not-the-holder")
    assert await store.acquire_lock(SELLER, ttl_s=5) is None
    assert not await store.put(_record(2), expected_version=1, lock_token="not-the-holder")  # noqa: S106
    assert await store.put(_record(2), expected_version=1, lock_token=lock)
    await store.release_lock(SELLER, lock)
    assert await store.acquire_lock(SELLER, ttl_s=5) is not None


async def test_only_one_of_many_concurrent_callbacks_takes_a_state(
    auth_redis: aioredis.Redis,
) -> None:
    states = RedisLoginStates(auth_redis, Namespace("auth", scope=unique()))
    login = LoginState(
        verifier=SecretStr("v" * 43), site_id="MLB", browser_binding="b", created_at=1.0
    )
    await states.put("the-state", login, ttl_s=60)
    taken = await asyncio.gather(*(states.take("the-state") for _ in range(20)))
    assert sum(t is not None for t in taken) == 1
    assert await states.was_used("the-state")
    assert not await states.was_used("another-state")
