"""Run the real messages worker (``python -m peepers_messages worker``) against the stack."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from peepers_common.events import MESSAGES_EVENT, MessagesEvent
from peepers_common.settings import KafkaSettings
from peepers_common.topics import (
    MESSAGES_CONVERSATIONS_CHANGELOG,
    MESSAGES_SUBMISSIONS_CHANGELOG,
    MESSAGES_TICKETS_CHANGELOG,
    PEEPERS_MESSAGES,
)
from peepers_messages.app import CONSUMED
from peepers_messages.settings import Settings as MessagesSettings
from peepers_sandbox.config import DEMO_APP_ID, DEMO_CLIENT_SECRET
from tests.integration.auth.harness import SELLER, SERVICE, SERVICE_SECRET, AuthStack, read_all
from tests.integration.ingest.support import free_port
from tests.integration.workers import answers_ready, worker_topics
from tests.integration.workers import notify as notify_worker
from tests.integration.workers import worker_process as running_worker
from tests.support import unique, wait_until

READER = ("support", "support-secret-0123456789")


async def messages_topics(kafka: KafkaSettings, prefix: str | None = None) -> str:
    """Registry-shaped topics for the messages worker behind a fresh prefix (or ``prefix``,
    shared with another service's topics); the prefix."""
    prefix = prefix or f"{unique('test')}."
    produced = [
        PEEPERS_MESSAGES,
        MESSAGES_TICKETS_CHANGELOG,
        MESSAGES_SUBMISSIONS_CHANGELOG,
        MESSAGES_CONVERSATIONS_CHANGELOG,
    ]
    await worker_topics(kafka, prefix, CONSUMED, produced)
    return prefix


@dataclass
class WorkerRun:
    """One worker deployment: its topics, consumer group, Redis scope and port."""

    prefix: str
    kafka: KafkaSettings
    sandbox_url: str
    broker_url: str
    log: Path
    scope: str = field(default_factory=lambda: unique("msg"))
    app_id: str = field(default_factory=lambda: unique("messages"))
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def topic(self, name: str) -> str:
        return self.prefix + name

    def env(self) -> dict[str, str]:
        redis = MessagesSettings().redis
        assert redis.password is not None, "source .stack/env"
        return {
            "MESSAGES_HTTP_HOST": "127.0.0.1",
            "MESSAGES_HTTP_PORT": str(self.port),
            "MESSAGES_LOG_LEVEL": "INFO",
            "MESSAGES_APP_ID": self.app_id,
            "MESSAGES_TOPIC_PREFIX": self.prefix,
            "MESSAGES_REDIS_SCOPE": self.scope,
            "MESSAGES_KAFKA__BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers,
            "MESSAGES_REDIS__URL": redis.url,
            "MESSAGES_REDIS__USERNAME": redis.username or "messages",
            "MESSAGES_REDIS__PASSWORD": redis.password.get_secret_value(),
            "MESSAGES_ML__BASE_URL": self.sandbox_url,
            "MESSAGES_ML__APP_ID": str(DEMO_APP_ID),
            "MESSAGES_ML__CLIENT_SECRET": DEMO_CLIENT_SECRET,
            "MESSAGES_ML__BACKOFF_INITIAL_S": "0.05",
            "MESSAGES_ML__BACKOFF_MAX_S": "0.2",
            "MESSAGES_ML__CALL_BUDGET_S": "3",
            "MESSAGES_ML__APP_LIMIT": '{"amount": 3000, "per_s": 60}',
            "MESSAGES_TOKEN_BROKER__URL": self.broker_url,
            "MESSAGES_TOKEN_BROKER__SERVICE": SERVICE,
            "MESSAGES_TOKEN_BROKER__SECRET": SERVICE_SECRET,
            "MESSAGES_RETRY__IN_PLACE_ATTEMPTS": "2",
            "MESSAGES_RETRY__PARK_DELAYS_S": "[1.0]",
            "MESSAGES_CHANGELOG_CHECK_EVERY_S": "1",
            "MESSAGES_SERVICE_CREDENTIALS": json.dumps({READER[0]: READER[1]}),
            **self.extra_env,
        }

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    async def ready(self) -> bool:
        return await answers_ready(self.url)

    async def get(self, path: str) -> Any:
        headers = {"Authorization": aiohttp.encode_basic_auth(*READER)}
        async with (
            aiohttp.ClientSession(headers=headers) as session,
            session.get(f"{self.url}/messages/sellers/{SELLER}{path}") as response,
        ):
            return await response.json()

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        headers = {"Authorization": aiohttp.encode_basic_auth(*READER)}
        async with (
            aiohttp.ClientSession(headers=headers) as session,
            session.post(f"{self.url}/messages/sellers/{SELLER}{path}", json=body) as response,
        ):
            assert response.status == 200, await response.text()
            return await response.json()

    async def events(self) -> list[MessagesEvent]:
        records = await read_all(self.kafka, self.topic(PEEPERS_MESSAGES))
        return [MESSAGES_EVENT.validate_json(r.value or b"") for r in records]


def worker_run(
    auth: AuthStack, prefix: str, kafka: KafkaSettings, log: Path, **fields: Any
) -> WorkerRun:
    return WorkerRun(
        prefix=prefix,
        kafka=kafka,
        sandbox_url=auth.sandbox.url,
        broker_url=auth.url,
        log=log,
        **fields,
    )


def worker_process(run: WorkerRun) -> AbstractContextManager[subprocess.Popen[bytes]]:
    return running_worker("peepers_messages", run.env(), run.log)


@asynccontextmanager
async def ready_worker(run: WorkerRun) -> AsyncIterator[subprocess.Popen[bytes]]:
    """`worker_process`, entered once its API answers ready."""
    with worker_process(run) as process:
        try:
            await wait_until(run.ready, timeout_s=40, every_s=0.2)
        except AssertionError:
            msg = f"the messages worker never got ready; its log:\n{run.log_tail()}"
            raise AssertionError(msg) from None
        yield process


async def notify(
    kafka: KafkaSettings,
    run: WorkerRun,
    topic: str,
    resource: str,
    *,
    value: bytes | None = None,
    actions: list[str] | None = None,
) -> None:
    """Put an ML-shaped notification (or ``value`` as it is) on the worker's topic."""
    await notify_worker(kafka, run.prefix, topic, resource, actions=actions, value=value)
