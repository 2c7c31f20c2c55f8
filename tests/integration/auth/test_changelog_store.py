"""Seller records through the changelog: the topic first, then the view; key rotation."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from peepers_auth.adapters.changelog_store import ChangelogSellerStore
from peepers_auth.adapters.redis_store import RedisSellerStore, SellerFields
from peepers_auth.crypto import TokenCipher
from peepers_auth.models import SealedTokens, SellerRecord
from peepers_auth.settings import Settings
from peepers_common.changelog import Changelog, RedisViewMarker
from peepers_common.errors import PublishError
from peepers_common.kafka import Published, read_to_end
from peepers_common.namespaces import Namespace, connect_redis
from peepers_common.settings import KafkaSettings
from peepers_common.topics import AUTH_SELLERS_CHANGELOG, topic_spec
from tests.support import create_topic, unique, wait_until

SELLER = 77
ACCESS = "APP_USR-1-010101-aa-77"
REFRESH = "TG-0123456789abcdef-77"


@pytest.fixture
async def auth_redis() -> AsyncIterator[aioredis.Redis]:
    """Redis as the auth service's ACL user (only auth:* keys)."""
    client = connect_redis(Settings().redis)
    yield client
    await client.aclose()


def _record(version: int, access: str = ACCESS, seller_id: int = SELLER) -> SellerRecord:
    return SellerRecord(
        seller_id=seller_id,
        version=version,
        status="connected",
        nickname="N",
        site_id="MLB",
        tokens=SealedTokens(
            seller_id=seller_id,
            access_token=SecretStr(access),
            refresh_token=SecretStr(REFRESH),
        ),
        expires_at=1.0,
        connected_at=1.0,
        updated_at=1.0,
    )


def _key() -> SecretStr:
    return SecretStr(TokenCipher.generate_key())


@asynccontextmanager
async def _store(
    kafka: KafkaSettings, redis: aioredis.Redis, topic: str, ns: Namespace, cipher: TokenCipher
) -> AsyncIterator[tuple[ChangelogSellerStore, RedisSellerStore, Changelog]]:
    view = RedisSellerStore(redis, ns, cipher)
    marker = RedisViewMarker(redis, ns, "sellers")
    async with Changelog(kafka, topic, view=view, marker=marker) as changelog:
        await wait_until(lambda: _ready(changelog))
        yield ChangelogSellerStore(view, changelog), view, changelog


async def _ready(changelog: Changelog) -> bool:
    return changelog.ready


async def _latest(kafka: KafkaSettings, topic: str) -> dict[int, SellerFields]:
    latest = {}
    for record in await read_to_end(kafka, [topic]):
        assert record.key is not None
        assert record.value is not None
        fields = SellerFields.from_changelog(record.key, record.value)
        latest[fields.seller_id] = fields
    return latest


@pytest.fixture
async def topic(kafka: KafkaSettings) -> str:
    return await create_topic(kafka, like=topic_spec(AUTH_SELLERS_CHANGELOG))


async def test_a_write_is_in_the_changelog_sealed_and_then_in_the_view(
    kafka: KafkaSettings, auth_redis: aioredis.Redis, topic: str
) -> None:
    cipher = TokenCipher([_key()])
    ns = Namespace("auth", scope=unique())
    async with _store(kafka, auth_redis, topic, ns, cipher) as (store, _, _):
        assert await store.put(_record(1), expected_version=0)
        assert not await store.put(_record(2), expected_version=0)  # stale: not even logged
    [raw] = await read_to_end(kafka, [topic])
    assert raw.key == str(SELLER).encode()
    assert raw.value is not None
    assert ACCESS.encode() not in raw.value
    assert REFRESH.encode() not in raw.value
    body = json.loads(raw.value)
    assert body["version"] == 1
    opened = cipher.open(body["sealed"].encode(), seller_id=SELLER)
    assert opened.access_token.get_secret_value() == ACCESS


async def test_a_writer_that_loses_the_race_after_logging_logs_the_winner_again(
    kafka: KafkaSettings, auth_redis: aioredis.Redis, topic: str
) -> None:
    cipher = TokenCipher([_key()])
    ns = Namespace("auth", scope=unique())
    async with _store(kafka, auth_redis, topic, ns, cipher) as (store, view, _):
        assert await store.put(_record(1), expected_version=0)
        rivals = [_record(2, f"APP_USR-1-010101-r{i}-77") for i in range(4)]
        # One pooled connection each, so their pre-checks run together, not one by one.
        await asyncio.gather(*(auth_redis.ping() for _ in rivals))
        landed = await asyncio.gather(*(store.put(r, expected_version=1) for r in rivals))
        assert sum(landed) == 1
        winner = await view.fields(SELLER)
    assert winner is not None
    records = await read_to_end(kafka, [topic])
    # Every rival passed the pre-check together and logged; each loser logged the winner.
    assert len(records) == 1 + len(rivals) + (len(rivals) - 1)
    latest = (await _latest(kafka, topic))[SELLER]
    assert latest == winner  # the topic's last word is the view's


async def test_rotating_keys_reseals_the_changelog_and_the_view_so_the_old_key_can_go(
    kafka: KafkaSettings, auth_redis: aioredis.Redis, topic: str
) -> None:
    ns = Namespace("auth", scope=unique())
    old, new = _key(), _key()
    async with _store(kafka, auth_redis, topic, ns, TokenCipher([old])) as (store, view, _):
        assert await store.put(_record(1), expected_version=0)
        # A record from before the changelog existed: only in the view.
        assert await view.put(_record(1, seller_id=SELLER + 1), expected_version=0)
    rotating = TokenCipher([new, old])
    async with _store(kafka, auth_redis, topic, ns, rotating) as (store, _, _):
        assert await store.rotate_keys(rotating) == 2
        assert await store.rotate_keys(rotating) == 0
    only_new = TokenCipher([new])
    latest = await _latest(kafka, topic)
    assert set(latest) == {SELLER, SELLER + 1}
    for seller_id, fields in latest.items():
        assert fields.version == 1
        assert only_new.open(fields.sealed, seller_id=seller_id).refresh_token.get_secret_value()
    async with _store(kafka, auth_redis, topic, ns, only_new) as (store, _, _):
        for seller_id in latest:
            stored = await store.get(seller_id)
            assert stored is not None
            assert stored.tokens is not None


async def test_a_lost_view_comes_back_on_the_next_read(
    kafka: KafkaSettings, auth_redis: aioredis.Redis, topic: str
) -> None:
    cipher = TokenCipher([_key()])
    ns = Namespace("auth", scope=unique())
    async with _store(kafka, auth_redis, topic, ns, cipher) as (store, _, changelog):
        assert await store.put(_record(1), expected_version=0)
        assert await store.put(_record(2, "APP_USR-1-010101-bb-77"), expected_version=1)
        # What a FLUSHALL does to this namespace (the shared Redis is never flushed).
        await auth_redis.delete(
            ns.key("seller", SELLER), ns.key("sellers"), ns.key("changelog", "sellers", "epoch")
        )
        stored = await store.get(SELLER)
        assert stored is not None
        assert stored.version == 2
        assert stored.tokens is not None
        assert stored.tokens.access_token.get_secret_value() == "APP_USR-1-010101-bb-77"
        assert changelog.ready


async def test_a_record_logged_after_a_newer_one_is_not_what_a_restore_brings_back(
    kafka: KafkaSettings, auth_redis: aioredis.Redis, topic: str
) -> None:
    cipher = TokenCipher([_key()])
    ns = Namespace("auth", scope=unique())
    async with _store(kafka, auth_redis, topic, ns, cipher) as (store, view, changelog):
        assert await store.put(_record(1), expected_version=0)
        assert await store.put(_record(2, "APP_USR-1-010101-bb-77"), expected_version=1)
        # Version 1 again, logged last: what a writer that lost a race to version 2 leaves.
        await changelog.write(str(SELLER), view.encode(_record(1)).changelog_value())
        await auth_redis.delete(ns.key("seller", SELLER), ns.key("changelog", "sellers", "epoch"))
        stored = await store.get(SELLER)
    assert stored is not None
    assert stored.version == 2


class RefusingChangelog(Changelog):
    """The real changelog, refusing writes while ``refusing``: Kafka down, as auth sees it."""

    refusing = False

    async def write(self, key: str | bytes, value: bytes | None) -> Published:
        if self.refusing:
            msg = "Kafka did not acknowledge the record"
            raise PublishError(msg)
        return await super().write(key, value)


async def test_a_record_kafka_refused_is_kept_flagged_and_logged_before_it_is_read(
    kafka: KafkaSettings, auth_redis: aioredis.Redis, topic: str
) -> None:
    cipher = TokenCipher([_key()])
    ns = Namespace("auth", scope=unique())
    view = RedisSellerStore(auth_redis, ns, cipher)
    changelog = RefusingChangelog(
        kafka, topic, view=view, marker=RedisViewMarker(auth_redis, ns, "sellers")
    )
    async with changelog:
        await wait_until(lambda: _ready(changelog))
        store = ChangelogSellerStore(view, changelog)
        assert await store.put(_record(1), expected_version=0)
        changelog.refusing = True
        # A refresh's new tokens (ML already retired the old refresh token).
        with pytest.raises(PublishError):
            await store.put(_record(2, "APP_USR-1-010101-new-77"), expected_version=1)
        kept = await view.fields(SELLER)
        assert kept is not None
        assert (kept.version, kept.unlogged) == (2, True)
        with pytest.raises(PublishError):
            await store.get(SELLER)  # never handed out before the changelog has it
        changelog.refusing = False
        record = await store.get(SELLER)
        assert record is not None
        assert record.tokens is not None
        assert record.tokens.access_token.get_secret_value() == "APP_USR-1-010101-new-77"
        logged = await view.fields(SELLER)
        assert logged is not None
        assert not logged.unlogged
    assert (await _latest(kafka, topic))[SELLER] == logged


class RefreshedMidRotation(RedisSellerStore):
    """A view in which a refresh lands right after rotation has read a seller's record."""

    store: ChangelogSellerStore
    refresh_once = True

    async def fields(self, seller_id: int) -> SellerFields | None:
        current = await super().fields(seller_id)
        if self.refresh_once and current is not None:
            self.refresh_once = False
            refreshed = _record(current.version + 1, "APP_USR-1-010101-mid-77")
            assert await self.store.put(refreshed, expected_version=current.version)
        return current


async def test_a_refresh_during_rotation_stays_the_sellers_last_record(
    kafka: KafkaSettings, auth_redis: aioredis.Redis, topic: str
) -> None:
    ns = Namespace("auth", scope=unique())
    old, new = _key(), _key()
    async with _store(kafka, auth_redis, topic, ns, TokenCipher([old])) as (store, _, _):
        assert await store.put(_record(1), expected_version=0)
    rotating = TokenCipher([new, old])
    view = RefreshedMidRotation(auth_redis, ns, rotating)
    marker = RedisViewMarker(auth_redis, ns, "sellers")
    async with Changelog(kafka, topic, view=view, marker=marker) as changelog:
        view.store = ChangelogSellerStore(view, changelog)
        assert await view.store.rotate_keys(rotating) == 0  # the refresh won
        stored = await view.store.get(SELLER)
    assert stored is not None
    assert stored.tokens is not None
    assert stored.tokens.access_token.get_secret_value() == "APP_USR-1-010101-mid-77"
    last = (await _latest(kafka, topic))[SELLER]
    assert last.version == 2  # logged again after the re-sealed version 1 that followed it
    assert not rotating.needs_rotation(last.sealed)
