"""The missed_feeds reconciler against the real sandbox, Kafka and Redis.

The sandbox's notifier posts to a port nobody listens on and gives up at once, so every
change it makes lands in its /missed_feeds; ingest then reads it through the real ML
client and the on-demand endpoint.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from peepers_common.ml import ml_session
from peepers_common.ml.broker_tokens import TokenBrokerSettings
from peepers_common.settings import KafkaSettings, MlApiSettings
from peepers_common.topics import notification_topic
from peepers_ingest.keys import reconciler_key
from peepers_sandbox.app import Sandbox, run_sandbox
from peepers_sandbox.config import (
    DEMO_APP_ID,
    DEMO_SELLER_ID,
    AppConfig,
    MarketplaceConfig,
    NotifierConfig,
    SandboxConfig,
)
from tests.integration.auth.harness import SERVICE, SERVICE_SECRET, auth_stack, login
from tests.integration.ingest.conftest import make_topics
from tests.integration.ingest.support import ce_id, free_port, read_all, running_ingest, value
from tests.support import sandbox_tokens, wait_until

ML_TOPICS = ("items", "items_prices", "questions", "orders_v2", "shipments", "messages")
OPS = ("ops", "ops-secret-0123456789")
AUTH = {"Authorization": aiohttp.encode_basic_auth(*OPS)}
DEAD_CALLBACK = f"http://127.0.0.1:{free_port()}/webhooks/mercadolibre"


def ml_settings(sandbox: Sandbox) -> MlApiSettings:
    return MlApiSettings(
        base_url=sandbox.url,
        backoff_initial_s=0.02,
        backoff_max_s=0.2,
        call_budget_s=5.0,
        app_limit=None,
        family_limits={},
    )


def reconciler_settings(sandbox: Sandbox, **overrides: Any) -> dict[str, Any]:
    return {
        "application_id": DEMO_APP_ID,
        "ml": ml_settings(sandbox),
        "reconcile_seller_ids": [DEMO_SELLER_ID],
        "reconcile_interval_s": 3600,
        "service_credentials": {OPS[0]: SecretStr(OPS[1])},
        **overrides,
    }


async def missed_entries(sandbox: Sandbox) -> list[dict[str, Any]]:
    """What the sandbox holds in /missed_feeds, once its notifier gave up on everything."""
    summary = await sandbox.admin.wait_notifier_idle()
    assert summary["delivered"] == 0
    assert summary["missed"] == summary["notifications"] > 0
    return [entry for _, _, entry in sandbox.state.notifier.missed]


@asynccontextmanager
async def after_startup_round(client: TestClient[Any, Any]) -> AsyncIterator[dict[str, Any]]:
    """Wait for the round every ingest runs at startup (so the test's rounds are its own)."""
    reconciler = client.app[reconciler_key]
    assert reconciler is not None

    async def done() -> bool:
        return reconciler.last_report is not None

    await wait_until(done)
    assert reconciler.last_report is not None
    yield reconciler.last_report.as_json()


async def reconcile(client: TestClient[Any, Any]) -> tuple[int, dict[str, Any]]:
    response = await client.post("/internal/reconcile", headers=AUTH)
    return response.status, await response.json()


async def test_every_missed_notification_lands_in_kafka_once_and_a_second_round_adds_nothing(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    prefix = await make_topics(kafka, ML_TOPICS)
    config = SandboxConfig(
        apps=[AppConfig(callback_url=DEAD_CALLBACK)],
        marketplace=MarketplaceConfig(
            sellers=2, items_per_seller=10, orders_per_seller=2, claims_per_seller=0, buyers=5
        ),
        notifier=NotifierConfig(retry_gaps_s=[]),
    )
    async with run_sandbox(config) as sandbox, ml_session(ml_settings(sandbox)) as session:
        # Only the first seller's token asks: missed_feeds is the application's, whoever asks.
        tokens = await sandbox_tokens(sandbox, session, ml_settings(sandbox), [DEMO_SELLER_ID])
        settings = reconciler_settings(sandbox, reconcile_page_size=4)
        async with (
            running_ingest(kafka, tmp_path, prefix, tokens=tokens, **settings) as client,
            after_startup_round(client) as startup,
        ):
            assert startup == {"outcomes": {}, "failure": None}
            market = sandbox.state.market
            for seller in market.items_by_seller:
                item_id = market.items_by_seller[seller][0]
                await sandbox.admin.event("item_edit", item_id=item_id)
                await sandbox.admin.event("price_change", item_id=item_id)
                await sandbox.admin.event("question", item_id=item_id)
                order = await sandbox.admin.event("new_order", seller_id=seller)
                await sandbox.admin.event("message", order_id=order["id"])
            missed = await missed_entries(sandbox)
            assert len(missed) > 8  # more than two pages

            first = await reconcile(client)
            second = await reconcile(client)

    assert first == (200, {"outcomes": {"published": len(missed)}, "failure": None})
    assert second == (200, {"outcomes": {"duplicate": len(missed)}, "failure": None})
    topics = [prefix + notification_topic(t) for t in (*ML_TOPICS, "unknown")]
    records = await read_all(kafka, topics)
    assert sorted(ce_id(r) for r in records) == sorted(entry["_id"] for entry in missed)
    by_id = {entry["_id"]: entry for entry in missed}
    for record in records:
        entry = by_id[ce_id(record)]
        published = value(record)
        assert record.topic == prefix + notification_topic(entry["topic"])
        assert published.pop("received_at")
        assert published == {k: v for k, v in entry.items() if k not in ("request", "response")}
    assert len({int(entry["user_id"]) for entry in missed}) == 2  # both sellers' losses


async def test_the_reconciler_asks_the_auth_services_token_broker_for_its_token(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    prefix = await make_topics(kafka, ML_TOPICS)
    async with auth_stack(kafka) as stack:
        async with stack.browser() as browser:
            await login(stack, browser)  # connects DEMO_SELLER_ID through OAuth + PKCE
        sandbox = stack.sandbox
        await sandbox.admin.patch_app(DEMO_APP_ID, callback_url=DEAD_CALLBACK)
        await sandbox.admin.patch_notifier(enabled=True, retry_gaps_s=[])
        for item_id in sandbox.state.market.items_by_seller[DEMO_SELLER_ID]:
            await sandbox.admin.event("item_edit", item_id=item_id)
        missed = await missed_entries(sandbox)
        broker = TokenBrokerSettings(
            url=stack.url, service=SERVICE, secret=SecretStr(SERVICE_SECRET)
        )
        settings = reconciler_settings(sandbox, token_broker=broker)
        async with (
            running_ingest(kafka, tmp_path, prefix, **settings) as client,
            after_startup_round(client) as startup,
        ):
            on_demand = await reconcile(client)

    assert startup == {"outcomes": {"published": len(missed)}, "failure": None}
    assert on_demand == (200, {"outcomes": {"duplicate": len(missed)}, "failure": None})
    records = await read_all(kafka, [prefix + notification_topic("items")])
    assert sorted(ce_id(r) for r in records) == sorted(entry["_id"] for entry in missed)
