"""The pure parts of bench/auth_restore.py (no stack, nothing timed)."""

from __future__ import annotations

import math

import redis.asyncio as aioredis
from pydantic import SecretStr

from bench.auth_restore import (
    FIRST_SELLER,
    last_versions,
    planned_writes,
    ratio,
    seller_record,
)
from peepers_auth.adapters.redis_store import RedisSellerStore, SellerFields
from peepers_auth.crypto import TokenCipher
from peepers_common.namespaces import Namespace


def test_every_seller_logs_in_once_and_every_nth_refreshes_after_all_logins() -> None:
    writes = list(planned_writes(25, 10))
    assert writes[:25] == [(FIRST_SELLER + i, 1) for i in range(25)]
    assert writes[25:] == [(FIRST_SELLER + i, 2) for i in (0, 10, 20)]
    versions = last_versions(25, 10)
    assert len(versions) == 25
    assert sum(v == 2 for v in versions.values()) == 3


async def test_a_bench_record_is_written_sealed_as_auth_writes_it() -> None:
    cipher = TokenCipher([SecretStr(TokenCipher.generate_key())])
    never_connected = aioredis.Redis()  # encoding sends no command
    store = RedisSellerStore(never_connected, Namespace("auth"), cipher)
    record = seller_record(FIRST_SELLER, 2)
    assert record.tokens is not None
    value = store.encode(record).changelog_value()
    assert record.tokens.access_token.get_secret_value().encode() not in value
    assert record.tokens.refresh_token.get_secret_value().encode() not in value
    fields = SellerFields.from_changelog(str(FIRST_SELLER).encode(), value)
    assert store.decode(fields) == record
    await never_connected.aclose()


def test_the_ratio_is_restore_over_baseline() -> None:
    assert ratio(3.0, 1.5) == 2.0
    assert math.isinf(ratio(1.0, 0.0))
