"""Helpers for ingest's integration tests."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from aiokafka import ConsumerRecord

from peepers_common.kafka import read_to_end
from peepers_common.ml import TokenProvider
from peepers_common.notifications import parse_cloudevent_headers
from peepers_common.settings import KafkaSettings
from peepers_devstack.child import bound
from peepers_devstack.plan import free_port as free_port  # as make run picks ports
from peepers_ingest.app import create_app
from peepers_ingest.settings import Settings as IngestSettings
from tests.support import unique
from tests.unit.ingest.fakes import APP_ID, loopback_settings

JSON = {"Content-Type": "application/json"}
URL = "/webhooks/mercadolibre"


@asynccontextmanager
async def running_ingest(
    kafka: KafkaSettings,
    spool_dir: Path,
    topic_prefix: str,
    *,
    tokens: TokenProvider | None = None,
    **overrides: Any,
) -> AsyncIterator[TestClient[Any, Any]]:
    """The real ingest in-process: real Kafka, real Redis (ACL user ingest), scoped keys.

    `overrides` are settings; `tokens` stands in for the auth service's token broker.
    """
    settings = loopback_settings(
        spool_dir,
        kafka=KafkaSettings(
            bootstrap_servers=kafka.bootstrap_servers,
            client_id="peepers-ingest-test",
            request_timeout_ms=kafka.request_timeout_ms,
        ),
        topic_prefix=topic_prefix,
        kafka_connect_wait_s=10,
        **overrides,
    )
    app = create_app(settings, redis_scope=unique(), tokens=tokens)
    async with TestClient(TestServer(app)) as client:
        yield client


# Every record now in the topics, up to their end offsets (so extras would show).
read_all = read_to_end


def ce_id(record: ConsumerRecord[bytes, bytes]) -> str:
    return parse_cloudevent_headers(record.headers).id


def value(record: ConsumerRecord[bytes, bytes]) -> dict[str, Any]:
    assert record.value is not None
    parsed: dict[str, Any] = json.loads(record.value)
    return parsed


@contextmanager
def ingest_process(
    port: int,
    spool_dir: Path,
    bootstrap: str,
    prefix: str,
    log: Path,
    *,
    application_id: int = APP_ID,
    extra_env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m peepers_ingest`` on loopback, configured through its environment only."""
    redis = IngestSettings().redis
    assert redis.password is not None, "source .stack/env"
    env = {
        "INGEST_HTTP_HOST": "127.0.0.1",
        "INGEST_HTTP_PORT": str(port),
        "INGEST_ALLOWED_CIDRS": '["127.0.0.0/8"]',
        "INGEST_APPLICATION_ID": str(application_id),
        "INGEST_SPOOL_DIR": str(spool_dir),
        "INGEST_TOPIC_PREFIX": prefix,
        "INGEST_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "INGEST_KAFKA_CONNECT_WAIT_S": "5",
        "INGEST_RATE_LIMIT_ENABLED": "false",
        "INGEST_DEDUP_TTL_S": "300",
        "INGEST_REDIS__URL": redis.url,
        "INGEST_REDIS__USERNAME": redis.username or "ingest",
        "INGEST_REDIS__PASSWORD": redis.password.get_secret_value(),
        **(extra_env or {}),
    }
    with log.open("ab") as out:
        process = subprocess.Popen(  # noqa: S603 - our own service, bound to this process's life
            bound([sys.executable, "-m", "peepers_ingest"]),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
