"""The messages worker as it runs in production: ``python -m peepers_messages worker``, fed
through Kafka, reading ML (the sandbox) with tokens from the auth service's broker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest

from peepers_common.consuming import H_ERROR_KIND
from peepers_common.events import SellerReconnected, seller_event_key
from peepers_common.kafka import AIOKafkaEventPublisher
from peepers_common.settings import KafkaSettings
from peepers_common.topics import PEEPERS_SELLERS, dlq_topic
from tests.integration.auth.harness import SELLER, AuthStack, auth_stack, login, read_all
from tests.integration.messages.worker import (
    WorkerRun,
    messages_topics,
    notify,
    ready_worker,
    worker_run,
)
from tests.support import wait_until


@pytest.fixture
async def deployed(
    kafka: KafkaSettings, tmp_path: Path
) -> AsyncIterator[tuple[AuthStack, WorkerRun]]:
    prefix = await messages_topics(kafka)
    async with auth_stack(kafka, topic=prefix + PEEPERS_SELLERS) as auth:
        run = worker_run(auth, prefix, kafka, tmp_path / "messages.log")
        async with ready_worker(run):
            yield auth, run


class TestMessagesWorker:
    async def test_a_connected_seller_is_backfilled_and_claims_become_tickets(
        self, deployed: tuple[AuthStack, WorkerRun], kafka: KafkaSettings
    ) -> None:
        auth, run = deployed
        admin = auth.sandbox.admin
        question = await admin.event("question", seller_id=SELLER, text="Tem garantia?")
        async with auth.browser() as browser:
            await login(auth, browser)  # seller.connected: the backfill

        async def in_inbox() -> bool:
            inbox = await run.get("/questions/inbox")
            return question["id"] in [q["id"] for q in inbox.get("questions", [])]

        await wait_until(in_inbox, timeout_s=30, every_s=0.2)

        order = await admin.event("new_order", seller_id=SELLER)
        await admin.event("payment", order_id=order["id"])
        claim = await admin.event("claim", order_id=order["id"])
        resource = f"/post-purchase/v1/claims/{claim['id']}"
        await notify(kafka, run, "post_purchase", resource, actions=["claims"])

        async def ticket_opened() -> bool:
            ticket = await run.get(f"/tickets/{claim['id']}")
            return bool(ticket.get("status") == "open")

        await wait_until(ticket_opened, timeout_s=20, every_s=0.2)
        types = sorted(e.type for e in await run.events())
        assert types.count("ticket.opened") == 1
        assert types.count("claim.opened") == 1
        assert types.count("question.received") >= 1

    async def test_a_reconnected_seller_gets_the_claims_closed_while_away(
        self, deployed: tuple[AuthStack, WorkerRun], kafka: KafkaSettings
    ) -> None:
        auth, run = deployed
        admin = auth.sandbox.admin
        async with auth.browser() as browser:
            await login(auth, browser)
        order = await admin.event("new_order", seller_id=SELLER)
        await admin.event("payment", order_id=order["id"])
        claim = await admin.event("claim", order_id=order["id"])
        resource = f"/post-purchase/v1/claims/{claim['id']}"
        await notify(kafka, run, "post_purchase", resource, actions=["claims"])

        def ticket_is(status: str) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                ticket = await run.get(f"/tickets/{claim['id']}")
                return bool(ticket.get("status") == status)

            return check

        await wait_until(ticket_is("open"), timeout_s=20, every_s=0.2)
        # Closed while the seller was away: no notification reaches Peepers.
        await admin.event("claim_close", claim_id=claim["id"])
        event = SellerReconnected(
            event_id=uuid4(),
            occurred_at=datetime.now(UTC),
            seller_id=SELLER,
            nickname="BACK",
            site_id="MLB",
        )
        async with AIOKafkaEventPublisher(kafka) as publisher:
            await publisher.publish(
                run.topic(PEEPERS_SELLERS),
                key=seller_event_key(event),
                value=event.model_dump_json().encode(),
            )
        await wait_until(ticket_is("closed"), timeout_s=30, every_s=0.2)

    async def test_a_malformed_record_goes_to_the_dlq(
        self, deployed: tuple[AuthStack, WorkerRun], kafka: KafkaSettings
    ) -> None:
        _auth, run = deployed
        await notify(kafka, run, "questions", "/questions/1", value=b"{not json")
        await notify(kafka, run, "questions", "/items/MLB1")  # not a question's resource
        dlq = run.topic(dlq_topic("ml.notifications.questions"))

        async def dead_lettered() -> bool:
            return len(await read_all(kafka, dlq)) >= 2

        await wait_until(dead_lettered, timeout_s=20, every_s=0.2)
        kinds = sorted(dict(r.headers)[H_ERROR_KIND].decode() for r in await read_all(kafka, dlq))
        assert kinds == ["malformed", "permanent"]
