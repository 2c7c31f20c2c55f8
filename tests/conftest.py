from __future__ import annotations

import asyncio
import socket
import sys
import threading
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from peepers_common.errors import InfrastructureError
from peepers_common.namespaces import connect_redis
from peepers_common.process import pending_tasks
from peepers_common.settings import KafkaSettings, StackSettings
from peepers_common.topic_admin import delete_topics_containing
from tests.support import SESSION_TOKEN


@pytest.fixture(scope="session")
def stack() -> StackSettings:
    """The local stack, located through the same env vars as everything else (.stack/env)."""
    return StackSettings()


@pytest.fixture(scope="session")
def kafka(stack: StackSettings) -> KafkaSettings:
    return stack.kafka


@pytest.fixture(scope="session", autouse=True)
def _delete_the_sessions_topics(stack: StackSettings) -> Iterator[None]:
    """At the end, delete the Kafka topics this session named (`unique` marks them).

    A local broker that kept every test's topics (thousands) became several times slower
    per record, which showed in every benchmark run on it afterwards.
    """
    yield
    host, _, port = stack.kafka.bootstrap_servers.split(",")[0].rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return  # no broker (a unit-only run): nothing was created on one
    try:
        asyncio.run(delete_topics_containing(stack.kafka, f"-{SESSION_TOKEN}"))
    except InfrastructureError as exc:
        print(f"\ncould not delete this session's topics: {exc}")


def _timeout_s(request: pytest.FixtureRequest) -> float | None:
    """The test's pytest-timeout: its marker's, else the command line's or the ini's."""
    marker = request.node.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    given = request.config.getoption("timeout", None) or request.config.getini("timeout")
    return float(given) if given else None


@pytest.fixture(autouse=True)
async def _await_chains_before_the_timeout(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """A second before a test's timeout, print where each of its asyncio tasks waits.

    pytest-timeout dumps the threads' stacks, and a test hung in an await shows only its
    event loop idle in ``select`` (CI met several such 60 s hangs whose cause it never
    showed). The chains of awaits name what each task waits on (`pending_tasks`).
    """
    timeout_s = _timeout_s(request)
    if not timeout_s or timeout_s <= 2:
        yield
        return
    loop = asyncio.get_running_loop()

    def report() -> None:
        lines = "\n  ".join(pending_tasks(loop))
        print(f"asyncio tasks {timeout_s - 1:.0f} s into the test:\n  {lines}", file=sys.stderr)

    timer = threading.Timer(timeout_s - 1, report)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


@pytest.fixture
async def redis_admin(stack: StackSettings) -> AsyncIterator[aioredis.Redis]:
    """Redis as the default (operator) user. An unreachable Redis fails the test."""
    client = connect_redis(stack.redis)
    await client.ping()
    yield client
    await client.aclose()
