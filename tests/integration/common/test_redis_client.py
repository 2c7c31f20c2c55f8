"""`connect_redis`: redis-py's asyncio client, its commands packed by hiredis, on the real Redis."""

from __future__ import annotations

import asyncio
from pathlib import Path

import redis.asyncio as aioredis
from redis.asyncio.connection import SSLConnection

from peepers_common.namespaces import Namespace, connect_redis
from peepers_common.settings import RedisSettings
from peepers_ingest.settings import Settings as IngestSettings
from tests.integration.auth.redis_server import private_redis
from tests.support import unique


async def test_every_kind_of_argument_round_trips(redis_admin: aioredis.Redis) -> None:
    client = connect_redis(IngestSettings().redis)
    ns = Namespace("ingest", scope=unique("client"))
    try:
        keys = [ns.key(name) for name in ("str", "bytes", "int", "float", "utf8")]
        await client.mset(
            {keys[0]: "text", keys[1]: b"\x00\xff", keys[2]: 42, keys[3]: 0.1, keys[4]: "ção"}
        )
        assert await client.mget(keys) == [b"text", b"\x00\xff", b"42", b"0.1", "ção".encode()]
        # A command whose name has a space (SCRIPT LOAD, behind register_script).
        script = client.register_script("return {KEYS[1], ARGV[1]}")
        assert await script([keys[0]], [b"arg"]) == [keys[0].encode(), b"arg"]
        await client.zadd(ns.key("z"), {"a": 1.5, "b": 1e20})
        assert await client.zrange(ns.key("z"), 0, -1, withscores=True) == [
            (b"a", 1.5),
            (b"b", 1e20),
        ]
        # What the operator reads is what was written.
        assert await redis_admin.get(keys[4]) == "ção".encode()
    finally:
        await redis_admin.delete(*keys, ns.key("z"))
        await client.aclose()


def test_tls_keeps_redis_pys_own_connection_class() -> None:
    client = connect_redis(RedisSettings(url="rediss://127.0.0.1:6380/0"))
    assert client.connection_pool.connection_class is SSLConnection
    plain = connect_redis(RedisSettings(url="redis://127.0.0.1:6379/0"))
    assert plain.connection_pool.connection_class is not aioredis.Connection
    assert issubclass(plain.connection_pool.connection_class, aioredis.Connection)


async def test_a_restarted_redis_costs_no_command_an_error(tmp_path: Path) -> None:
    """Every pooled connection dies with the server; each reconnects on its next command
    (one retry) instead of failing it (auth answered 503 once per dead connection)."""
    async with private_redis(tmp_path) as server:
        client = connect_redis(server.settings)
        try:
            keys = [f"k{i}" for i in range(5)]
            await asyncio.gather(*(client.set(key, 1) for key in keys))  # five connections
            await server.restart()
            assert await asyncio.gather(*(client.get(key) for key in keys)) == [None] * 5
        finally:
            await client.aclose()
