"""Run the real orders worker (``python -m peepers_orders worker``) and its mailer
(``python -m peepers_orders mailer``, a process of its own) against the stack."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from peepers_common.namespaces import Namespace
from peepers_common.settings import KafkaSettings
from peepers_common.topics import (
    ORDERS_EMAILS_CHANGELOG,
    PEEPERS_ORDERS,
    PEEPERS_SELLERS,
)
from peepers_orders.adapters.redis_store import RedisOrderStore
from peepers_orders.app import NOTIFICATION_TOPICS
from peepers_orders.ports import CachedOrder
from peepers_orders.settings import Settings as OrdersSettings
from peepers_sandbox.config import DEMO_APP_ID, DEMO_CLIENT_SECRET
from tests.integration.auth.harness import SERVICE, SERVICE_SECRET, AuthStack, read_all
from tests.integration.ingest.support import free_port
from tests.integration.workers import answers_ready, worker_topics
from tests.integration.workers import notify as notify_worker
from tests.integration.workers import worker_process as running_worker
from tests.support import unique, wait_until

READER = ("reader", "reader-secret-0123456789")


async def orders_topics(kafka: KafkaSettings) -> str:
    """Registry-shaped topics for the orders service behind a fresh prefix; the prefix."""
    prefix = f"{unique('test')}."
    await worker_topics(
        kafka,
        prefix,
        [*NOTIFICATION_TOPICS, PEEPERS_SELLERS, PEEPERS_ORDERS],
        [ORDERS_EMAILS_CHANGELOG],
    )
    return prefix


@dataclass
class OrdersRun:
    """One deployment (worker and mailer): topics, consumer groups, Redis scope, ports, SMTP."""

    prefix: str
    kafka: KafkaSettings
    auth: AuthStack
    smtp_port: int
    log: Path
    scope: str = field(default_factory=lambda: unique("ord"))
    app_id: str = field(default_factory=lambda: unique("orders"))
    mailer_id: str = field(default_factory=lambda: unique("mailer"))
    port: int = field(default_factory=free_port)
    mailer_port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mailer_url(self) -> str:
        return f"http://127.0.0.1:{self.mailer_port}"

    @property
    def mailer_log(self) -> Path:
        return self.log.with_name(f"{self.log.stem}-mailer{self.log.suffix}")

    def mailer_env(self) -> dict[str, str]:
        return {**self.env(), "ORDERS_HTTP_PORT": str(self.mailer_port)}

    def topic(self, name: str) -> str:
        return self.prefix + name

    def env(self) -> dict[str, str]:
        redis = OrdersSettings().redis
        assert redis.password is not None, "source .stack/env"
        return {
            "ORDERS_HTTP_HOST": "127.0.0.1",
            "ORDERS_HTTP_PORT": str(self.port),
            "ORDERS_LOG_LEVEL": "INFO",
            "ORDERS_APP_ID": self.app_id,
            "ORDERS_TOPIC_PREFIX": self.prefix,
            "ORDERS_REDIS_SCOPE": self.scope,
            "ORDERS_KAFKA__BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers,
            "ORDERS_REDIS__URL": redis.url,
            "ORDERS_REDIS__USERNAME": redis.username or "orders",
            "ORDERS_REDIS__PASSWORD": redis.password.get_secret_value(),
            "ORDERS_ML__BASE_URL": self.auth.sandbox.url,
            "ORDERS_ML__APP_ID": str(DEMO_APP_ID),
            "ORDERS_ML__CLIENT_SECRET": DEMO_CLIENT_SECRET,
            "ORDERS_ML__BACKOFF_INITIAL_S": "0.05",
            "ORDERS_ML__BACKOFF_MAX_S": "0.2",
            "ORDERS_ML__CALL_BUDGET_S": "3",
            "ORDERS_TOKEN_BROKER__URL": self.auth.url,
            "ORDERS_TOKEN_BROKER__SERVICE": SERVICE,
            "ORDERS_TOKEN_BROKER__SECRET": SERVICE_SECRET,
            "ORDERS_RETRY__IN_PLACE_ATTEMPTS": "2",
            "ORDERS_RETRY__PARK_DELAYS_S": "[1.0, 1.0]",
            # The sandbox seeds its history about 550 days before now.
            "ORDERS_BACKFILL__DAYS": "1000",
            "ORDERS_SMTP__HOST": "127.0.0.1",
            "ORDERS_SMTP__PORT": str(self.smtp_port),
            "ORDERS_SMTP__TIMEOUT_S": "2",
            "ORDERS_MAIL__APP_ID": self.mailer_id,
            "ORDERS_MAIL__RETRY__IN_PLACE_ATTEMPTS": "1",
            "ORDERS_MAIL__RETRY__PARK_DELAYS_S": json.dumps([0.5] * 60),
            "ORDERS_SERVICE_CREDENTIALS": json.dumps({READER[0]: READER[1]}),
            "ORDERS_CACHE_CHECK_EVERY_S": "0.5",
            **self.extra_env,
        }

    def log_tail(self) -> str:
        return "\n".join(
            f"{log.name}:\n{log.read_text(errors='replace')[-4000:]}"
            for log in (self.log, self.mailer_log)
            if log.exists()
        )

    async def ready(self) -> bool:
        """Whether the worker and the mailer both answer ready."""
        return await answers_ready(self.url) and await answers_ready(self.mailer_url)

    async def cache_ready(self) -> bool:
        """Whether the worker says its cache is ready: a new (or lost) cache's rebuild is
        done (``/readyz`` answers 200 meanwhile, with ``"cache": "rebuilding"``)."""
        return await answers_ready(self.url) and (await self.get("/readyz"))["cache"] == "ready"

    def store(self, redis: aioredis.Redis) -> RedisOrderStore:
        return RedisOrderStore(redis, Namespace("orders", scope=self.scope))

    async def cached(self, redis: aioredis.Redis, order_id: int) -> CachedOrder | None:
        return (await self.store(redis).load(order_id)).order

    async def events(self) -> list[dict[str, Any]]:
        return [
            json.loads(r.value or b"{}")
            for r in await read_all(self.kafka, self.topic(PEEPERS_ORDERS))
        ]

    async def get(self, path: str) -> Any:
        headers = {"Authorization": aiohttp.encode_basic_auth(*READER)}
        async with (
            aiohttp.ClientSession() as session,
            session.get(self.url + path, headers=headers) as response,
        ):
            assert response.status == 200, await response.text()
            return await response.json()


@contextmanager
def mailer_process(run: OrdersRun) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m peepers_orders mailer``, the deployment's mailer alone."""
    with running_worker("peepers_orders", run.mailer_env(), run.mailer_log, command="mailer") as p:
        yield p


@contextmanager
def worker_only(run: OrdersRun) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m peepers_orders worker``, with no mailer."""
    with running_worker("peepers_orders", run.env(), run.log) as process:
        yield process


@dataclass(frozen=True)
class Deployed:
    """The worker's and the mailer's processes; ``pid`` and ``poll`` are the worker's."""

    worker: subprocess.Popen[bytes]
    mailer: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.worker.pid

    def poll(self) -> int | None:
        return self.worker.poll()

    def kill(self) -> None:
        """SIGKILL both: no rebalance, no commit, no flush, no ledger write."""
        self.worker.kill()
        self.mailer.kill()

    def wait(self) -> None:
        self.worker.wait()
        self.mailer.wait()


@contextmanager
def worker_process(run: OrdersRun) -> Iterator[Deployed]:
    """The worker and its mailer, as deployed (two processes)."""
    with mailer_process(run) as mailer, worker_only(run) as worker:
        yield Deployed(worker, mailer)


@asynccontextmanager
async def ready_worker(run: OrdersRun) -> AsyncIterator[Deployed]:
    """`worker_process`, entered once its read API answers ready."""
    with worker_process(run) as process:
        try:
            await wait_until(run.ready, timeout_s=40, every_s=0.2)
        except AssertionError:
            raise AssertionError(run.log_tail()) from None
        yield process


async def notify(kafka: KafkaSettings, run: OrdersRun, topic: str, resource: str) -> None:
    """Put an ML-shaped notification straight on the worker's notification topic."""
    await notify_worker(kafka, run.prefix, topic, resource)


def of_order(events: list[dict[str, Any]], order_id: int) -> list[str]:
    """The order's transitions, one per event id (delivery is at least once: a record may
    come twice, with the same id, when two writers race on the outbox)."""
    seen: dict[str, str] = {}
    for event in events:
        if event["order_id"] == order_id:
            seen.setdefault(event["event_id"], event["type"])
    return list(seen.values())
