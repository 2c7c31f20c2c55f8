"""Helpers for tests (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import UnionType
from typing import Any, TypeVar, Union, get_args, get_origin
from uuid import uuid4

import aiohttp
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings
from redis.asyncio.client import MonitorCommandInfo
from redis.exceptions import RedisError

from peepers_catalog.settings import Settings as CatalogSettings
from peepers_common.ml import (
    HttpMlApi,
    MlOAuthClient,
    OAuthTokenProvider,
    OutboundLimiter,
    TokenSet,
    ml_session,
)
from peepers_common.namespaces import connect_redis
from peepers_common.settings import KafkaSettings, MlApiSettings
from peepers_common.topic_admin import ensure_topics
from peepers_common.topics import TopicSpec
from peepers_devstack.plan import free_port
from peepers_sandbox.app import Sandbox
from peepers_sandbox.config import DEMO_APP_ID, DEMO_CLIENT_SECRET

# How long a test's in-process server (auth, web) lets requests in flight finish when it
# stops, before cancelling them: aiohttp's default, 60 s, let one handler still waiting
# (its client killed mid-request) hold a test's teardown past the test's timeout.
SERVER_STOP_WAIT_S = 2.0

# In every name `unique` makes, so the session can delete its Kafka topics at the end.
SESSION_TOKEN = uuid4().hex[:6]


def unique(prefix: str = "test") -> str:
    """A name no other test uses: topics, groups, key scopes."""
    return f"{prefix}-{SESSION_TOKEN}{uuid4().hex[:6]}"


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], *, timeout_s: float = 10.0, every_s: float = 0.05
) -> None:
    """Poll until `predicate` is true; fail the test at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        if time.monotonic() > deadline:
            msg = f"condition not met within {timeout_s} s"
            raise AssertionError(msg)
        await asyncio.sleep(every_s)


async def create_topic(
    kafka: KafkaSettings, like: TopicSpec | None = None, partitions: int = 1
) -> str:
    """Create a uuid-named topic, shaped like a registry topic when `like` is given."""
    if like is None:
        spec = TopicSpec(unique("test-topic"), partitions, "test topic")
    else:
        spec = TopicSpec(
            f"{unique('test')}.{like.name}", like.partitions, like.description, like.config
        )
    await ensure_topics(kafka, [spec])
    return spec.name


async def consume(
    kafka: KafkaSettings,
    topic: str,
    count: int,
    *,
    group_id: str | None = None,
    timeout_s: float = 15.0,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read `count` records from the start of `topic` (committing when in a group)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=group_id,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        async with asyncio.timeout(timeout_s):
            while len(records) < count:
                batch = await consumer.getmany(timeout_ms=200, max_records=count - len(records))
                for partition_records in batch.values():
                    records.extend(partition_records)
            if group_id is not None:
                await consumer.commit()
    finally:
        await consumer.stop()
    return records


async def sandbox_tokens(
    sandbox: Sandbox,
    session: aiohttp.ClientSession,
    settings: MlApiSettings,
    sellers: Sequence[int],
) -> OAuthTokenProvider:
    """Tokens for `sellers`, minted by the sandbox's admin API (no browser login)."""
    tokens = OAuthTokenProvider(MlOAuthClient(session, settings))
    for seller in sellers:
        tokens.add(seller, TokenSet.model_validate(await sandbox.admin.mint_token(seller)))
    return tokens


@asynccontextmanager
async def ml_client(
    sandbox: Sandbox, sellers: Sequence[int], **overrides: Any
) -> AsyncIterator[tuple[HttpMlApi, OAuthTokenProvider]]:
    """An ML client aimed at an in-process sandbox, as one replica would build it.

    Tokens come from the sandbox's admin API; the limiter uses Redis as the catalog
    service's ACL user, under a scope of its own unless `limiter_scope` is given (replicas
    of one app share a scope).
    """
    scope = overrides.pop("limiter_scope", unique("ml"))
    fields: dict[str, Any] = {
        "base_url": sandbox.url,
        "app_id": DEMO_APP_ID,
        "client_secret": SecretStr(DEMO_CLIENT_SECRET),
        "backoff_initial_s": 0.02,
        "backoff_max_s": 0.2,
        "call_budget_s": 5.0,
        "app_limit": None,
        "family_limits": {},
        **overrides,
    }
    settings = MlApiSettings(**fields)
    async with ml_session(settings) as session:
        tokens = await sandbox_tokens(sandbox, session, settings, sellers)
        redis = connect_redis(CatalogSettings().redis)
        try:
            limiter = OutboundLimiter(redis, settings, scope=scope)
            yield HttpMlApi(session, settings, tokens, limiter), tokens
        finally:
            await redis.aclose()


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The settings group behind a field's annotation (`KafkaSettings`, `X | None`)."""
    if isinstance(annotation, type):
        return annotation if issubclass(annotation, BaseModel) else None
    if get_origin(annotation) in (Union, UnionType):
        groups = [m for m in map(_nested_model, get_args(annotation)) if m is not None]
        return groups[0] if len(groups) == 1 else None
    return None


def settings_field(settings: type[BaseSettings], env_name: str) -> FieldInfo | None:
    """The field an env var sets (`INGEST_REDIS__URL` -> `redis.url`), or None if none.

    Follows pydantic-settings: the class's `env_prefix`, then field names nested with
    `env_nested_delimiter`, case-insensitively; a group may be optional (`X | None`).
    """
    prefix = settings.model_config.get("env_prefix", "")
    delimiter = settings.model_config.get("env_nested_delimiter") or "__"
    if not env_name.upper().startswith(prefix.upper()):
        return None
    model: type[BaseModel] | None = settings
    field: FieldInfo | None = None
    for part in env_name[len(prefix) :].lower().split(delimiter):
        if model is None:
            return None
        field = model.model_fields.get(part)
        if field is None:
            return None
        model = _nested_model(field.annotation)
    return field


def holds_secret(field: FieldInfo) -> bool:
    """Whether a field's value is secret (`SecretStr`, alone or inside a list or dict)."""

    def secret(annotation: Any) -> bool:
        return annotation is SecretStr or any(secret(arg) for arg in get_args(annotation))

    return secret(field.annotation)


T = TypeVar("T")


async def redis_commands_during(
    admin: aioredis.Redis, probe: aioredis.Redis, marker: str, action: Callable[[], Awaitable[T]]
) -> tuple[T, list[MonitorCommandInfo]]:
    """``action``'s result and every command Redis ran meanwhile (MONITOR, no mock).

    ``probe`` sends ``GET marker`` after the action, which marks the end of its commands;
    ``marker`` must be a key the probe's ACL user may read.
    """
    commands: list[MonitorCommandInfo] = []
    async with admin.monitor() as monitor:
        result = await action()
        await probe.get(marker)
        async with asyncio.timeout(5):  # other clients' commands stream by too
            while (command := await monitor.next_command())["command"] != f"GET {marker}":
                commands.append(command)
    return result, commands


@asynccontextmanager
async def private_redis(directory: Path, users: Sequence[str] = ("catalog",)) -> AsyncIterator[str]:
    """A redis-server of the test's own on a free port, without persistence; yields its URL.

    For tests that lose Redis (FLUSHALL, a restart): never the shared one. ``users`` are
    the ACL users the services log in as (any password), allowed everything.
    """
    port = free_port()
    log = (directory / f"redis-{port}.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        "redis-server",
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(directory),
        "--user", "default", "on", "nopass", "~*", "&*", "+@all",
        *(arg for user in users for arg in ("--user", user, "on", "nopass", "~*", "&*", "+@all")),
        stdout=log,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = aioredis.Redis.from_url(url)

        async def answers() -> bool:
            try:
                return bool(await client.ping())
            except (RedisError, OSError):
                return False

        try:
            await wait_until(answers, timeout_s=10, every_s=0.05)
        finally:
            await client.aclose()
        yield url
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()
        log.close()
