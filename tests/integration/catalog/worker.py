"""Run the real catalog worker (``python -m peepers_catalog worker``) against the stack."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from peepers_catalog.adapters.redis_store import RedisItemStore
from peepers_catalog.adapters.redis_sync import RedisSyncCheckpoints
from peepers_catalog.app import ITEM_TOPICS
from peepers_catalog.settings import Settings as CatalogSettings
from peepers_common.namespaces import Namespace
from peepers_common.settings import KafkaSettings
from peepers_common.topics import (
    CATALOG_SELLERS_CHANGELOG,
    PEEPERS_CATALOG,
    PEEPERS_SELLERS,
)
from peepers_sandbox.config import DEMO_APP_ID, DEMO_CLIENT_SECRET
from tests.integration.auth.harness import (
    SELLER,
    SERVICE,
    SERVICE_SECRET,
    AuthStack,
    login,
    read_all,
)
from tests.integration.ingest.support import free_port
from tests.integration.workers import answers_ready, worker_topics
from tests.integration.workers import notify as notify_worker
from tests.integration.workers import worker_process as running_worker
from tests.support import unique, wait_until

READER = ("reader", "reader-secret-0123456789")


async def catalog_topics(kafka: KafkaSettings, prefix: str | None = None) -> str:
    """Registry-shaped topics for the catalog behind a fresh prefix (or ``prefix``, shared
    with another service's topics); returns the prefix."""
    prefix = prefix or f"{unique('test')}."
    await worker_topics(
        kafka, prefix, [*ITEM_TOPICS, PEEPERS_SELLERS], [PEEPERS_CATALOG, CATALOG_SELLERS_CHANGELOG]
    )
    return prefix


@dataclass
class WorkerRun:
    """One worker deployment: its topics, consumer group, Redis scope and port."""

    prefix: str
    kafka: KafkaSettings
    sandbox_url: str
    broker_url: str
    broker_service: str
    broker_secret: str
    log: Path
    scope: str = field(default_factory=lambda: unique("cat"))
    app_id: str = field(default_factory=lambda: unique("catalog"))
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def topic(self, name: str) -> str:
        return self.prefix + name

    def env(self) -> dict[str, str]:
        redis = CatalogSettings().redis
        assert redis.password is not None, "source .stack/env"
        return {
            "CATALOG_HTTP_HOST": "127.0.0.1",
            "CATALOG_HTTP_PORT": str(self.port),
            "CATALOG_LOG_LEVEL": "INFO",
            "CATALOG_APP_ID": self.app_id,
            "CATALOG_TOPIC_PREFIX": self.prefix,
            "CATALOG_REDIS_SCOPE": self.scope,
            "CATALOG_KAFKA__BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers,
            "CATALOG_REDIS__URL": redis.url,
            "CATALOG_REDIS__USERNAME": redis.username or "catalog",
            "CATALOG_REDIS__PASSWORD": redis.password.get_secret_value(),
            "CATALOG_ML__BASE_URL": self.sandbox_url,
            "CATALOG_ML__APP_ID": str(DEMO_APP_ID),
            "CATALOG_ML__CLIENT_SECRET": DEMO_CLIENT_SECRET,
            "CATALOG_ML__BACKOFF_INITIAL_S": "0.05",
            "CATALOG_ML__BACKOFF_MAX_S": "0.2",
            "CATALOG_ML__CALL_BUDGET_S": "3",
            "CATALOG_TOKEN_BROKER__URL": self.broker_url,
            "CATALOG_TOKEN_BROKER__SERVICE": self.broker_service,
            "CATALOG_TOKEN_BROKER__SECRET": self.broker_secret,
            "CATALOG_RETRY__IN_PLACE_ATTEMPTS": "2",
            "CATALOG_RETRY__PARK_DELAYS_S": "[1.0]",
            "CATALOG_SERVICE_CREDENTIALS": json.dumps({READER[0]: READER[1]}),
            **self.extra_env,
        }

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    async def metric(self, name: str) -> float:
        """The sum of a metric's samples on the worker's /metrics (0 when absent).

        ``name`` may carry labels as Prometheus prints them: ``x_total{field="price"}``.
        """
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.url}/metrics") as response,
        ):
            text = await response.text()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name) and not line.startswith("#")
        )

    async def ready(self) -> bool:
        return await answers_ready(self.url)


def worker_process(run: WorkerRun) -> AbstractContextManager[subprocess.Popen[bytes]]:
    return running_worker("peepers_catalog", run.env(), run.log)


def worker_run(
    auth: AuthStack, prefix: str, kafka: KafkaSettings, log: Path, **fields: Any
) -> WorkerRun:
    """A worker deployment reading ML through `auth`'s sandbox, with tokens from its broker."""
    return WorkerRun(
        prefix=prefix,
        kafka=kafka,
        sandbox_url=auth.sandbox.url,
        broker_url=auth.url,
        broker_service=SERVICE,
        broker_secret=SERVICE_SECRET,
        log=log,
        **fields,
    )


@asynccontextmanager
async def ready_worker(run: WorkerRun) -> AsyncIterator[subprocess.Popen[bytes]]:
    """`worker_process`, entered once its read API answers ready."""
    with worker_process(run) as process:
        await wait_until(run.ready, timeout_s=40, every_s=0.2)
        yield process


def sandbox_items(auth: AuthStack) -> dict[str, dict[str, Any]]:
    market = auth.sandbox.state.market
    return {i: market.items[i] for i in market.items_by_seller[SELLER]}


def item_store(run: WorkerRun, redis: aioredis.Redis) -> RedisItemStore:
    return RedisItemStore(redis, Namespace("catalog", scope=run.scope))


async def connect_and_sync(auth: AuthStack, run: WorkerRun, redis: aioredis.Redis) -> None:
    """Log the seller in (seller.connected) and wait until its full sync is done."""
    async with auth.browser() as browser:
        await login(auth, browser)
    items = sandbox_items(auth)
    checkpoints = RedisSyncCheckpoints(redis, Namespace("catalog", scope=run.scope))

    async def synced() -> bool:
        state = await checkpoints.load(SELLER)
        if state is None or state.phase != "done":
            return False
        return set(await item_store(run, redis).get_many(items)) == set(items)

    await wait_until(synced, timeout_s=30, every_s=0.2)


async def notify(kafka: KafkaSettings, run: WorkerRun, topic: str, resource: str) -> None:
    """Put an ML-shaped notification straight on the worker's notification topic."""
    await notify_worker(kafka, run.prefix, topic, resource)


async def events(kafka: KafkaSettings, run: WorkerRun) -> list[dict[str, Any]]:
    return [json.loads(r.value or b"{}") for r in await read_all(kafka, run.topic(PEEPERS_CATALOG))]
