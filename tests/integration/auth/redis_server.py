"""A private Redis server a test may flush or restart (never the shared one).

Started as the shared stack starts its own: no persistence (``--save ''``, no AOF), so
a restart comes back empty, exactly as the production cache may. Default user, no ACL:
the auth ACL itself is tested against the shared Redis.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from peepers_common.settings import RedisSettings
from peepers_devstack.child import bound
from peepers_devstack.plan import free_port


class PrivateRedis:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def settings(self) -> RedisSettings:
        return RedisSettings(url=f"redis://127.0.0.1:{self.port}/0")

    async def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None, "redis-server is missing (scripts/stack installs it)"
        self._process = subprocess.Popen(  # noqa: S603, ASYNC220 - our own command; returns at once
            bound(
                [
                    binary,
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.directory),
                ]
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = aioredis.Redis(port=self.port)
        try:
            async with asyncio.timeout(10):
                while True:
                    with suppress(RedisConnectionError):
                        if await client.ping():
                            return
                    await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    async def stop(self) -> None:
        if self._process is None:
            return
        self._process.kill()
        await asyncio.to_thread(self._process.wait, 10)
        self._process = None

    async def restart(self) -> None:
        """Kill it and start it again on the same port: it comes back empty."""
        await self.stop()
        await self.start()

    async def flushall(self) -> None:
        client = aioredis.Redis(port=self.port)
        try:
            await client.flushall()
        finally:
            await client.aclose()


@asynccontextmanager
async def private_redis(directory: Path) -> AsyncIterator[PrivateRedis]:
    server = PrivateRedis(directory)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
