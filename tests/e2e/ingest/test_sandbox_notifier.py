"""End to end: the ML sandbox's notifier, which behaves like ML's (500 ms deadline, retries
on anything else), sends thousands of notifications to a running ingest process."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from peepers_common.notifications import parse_cloudevent_headers
from peepers_common.settings import KafkaSettings
from peepers_common.topic_admin import ensure_topics
from peepers_common.topics import TOPICS, TopicSpec
from peepers_sandbox.app import run_sandbox
from peepers_sandbox.config import DEMO_APP_ID, AppConfig, MarketplaceConfig, SandboxConfig
from tests.integration.ingest.support import free_port, ingest_process, read_all
from tests.support import unique, wait_until

pytestmark = pytest.mark.e2e

NOTIFICATIONS = 3000


async def test_the_notifiers_log_shows_every_notification_answered_200_within_500_ms(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    prefix = f"{unique('e2e')}."
    topics = [
        name
        for name in TOPICS
        if name.startswith("ml.notifications.") and not name.endswith(".dlq")
    ]
    await ensure_topics(
        kafka,
        [
            TopicSpec(prefix + n, TOPICS[n].partitions, TOPICS[n].description, TOPICS[n].config)
            for n in topics
        ],
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "ingest.log"
    config = SandboxConfig(
        apps=[AppConfig(callback_url=f"{base}/webhooks/mercadolibre")],
        marketplace=MarketplaceConfig(sellers=2, items_per_seller=200, orders_per_seller=40),
    )
    with ingest_process(
        port,
        tmp_path / "spool",
        kafka.bootstrap_servers,
        prefix,
        log,
        application_id=DEMO_APP_ID,
        extra_env={"INGEST_RATE_LIMIT_ENABLED": "true", "INGEST_RATE_LIMIT_PER_IP_PER_S": "5000"},
    ):
        async with aiohttp.ClientSession() as session:

            async def ready() -> bool:
                try:
                    async with session.get(f"{base}/readyz") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_until(ready, timeout_s=20, every_s=0.1)
        async with run_sandbox(config) as sandbox:
            notifier = sandbox.state.notifier
            activity = sandbox.state.activity
            activity.start(400.0)

            async def enough() -> bool:
                return bool(notifier.stats["notifications"] >= NOTIFICATIONS)

            await wait_until(enough, timeout_s=30, every_s=0.1)
            await activity.stop()
            await notifier.wait_idle(within_s=30)
            attempts = list(notifier.attempt_log)
            summary = notifier.summary()

    assert summary["notifications"] >= NOTIFICATIONS
    assert summary["failed_attempts"] == 0, [a for a in attempts if not a["ok"]][:5]
    assert summary["delivered"] == summary["notifications"]
    assert len(attempts) == summary["notifications"]
    assert {a["status"] for a in attempts} == {200}
    slowest = max(a["latency_ms"] for a in attempts)
    assert slowest < 500, f"slowest answer {slowest} ms"

    records = await read_all(kafka, [prefix + n for n in topics])
    ids = [parse_cloudevent_headers(r.headers).id for r in records]
    assert len(ids) == len(set(ids)) == summary["notifications"]
