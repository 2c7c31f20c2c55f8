"""The orders service end to end: the sandbox's notifier -> ingest -> Kafka -> the orders
worker -> Redis, ``peepers.orders.v1`` and mail to a real SMTP server (aiosmtpd)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from peepers_common.events import ORDERS_EVENT, OrdersEvent
from peepers_common.kafka import caught_up
from peepers_common.ml.models import MlOrder, MlShipment
from peepers_common.settings import KafkaSettings
from peepers_common.topics import PEEPERS_ORDERS, PEEPERS_SELLERS, retry_topic
from peepers_orders import lifecycle
from peepers_orders.app import NOTIFICATION_TOPICS
from peepers_orders.mail import transition_of
from peepers_orders.ports import CachedOrder
from peepers_sandbox.config import DEMO_APP_ID
from tests.integration.auth.harness import SELLER, AuthStack, auth_stack, login
from tests.integration.ingest.support import URL, read_all, running_ingest
from tests.integration.orders.smtp import SmtpSink
from tests.integration.orders.worker import OrdersRun, orders_topics
from tests.support import wait_until

# Activity that moves orders (the order kinds of peepers_sandbox.activity).
ORDER_MIX = {
    "new_order": 3.0,
    "cart": 0.3,
    "payment_required": 0.3,
    "payment_in_process": 0.3,
    "partial_payment": 0.3,
    "payment": 3.0,
    "label": 1.0,
    "shipment": 2.0,
    "delivery": 2.0,
    "not_delivered": 0.2,
    "not_verified": 0.1,
    "cancellation": 0.5,
    "pending_cancel": 0.2,
    "invalid": 0.1,
    "partial_refund": 0.2,
    "refund": 0.1,
}
ENV = {
    # The worker's own outbound limit would hold a burst back; the sandbox limits nothing.
    "ORDERS_ML__APP_LIMIT": '{"amount": 6000, "per_s": 60}',
    # A shipment's notification may overtake its order's: it waits for it, parked.
    "ORDERS_RETRY__PARK_DELAYS_S": "[1.0, 2.0, 4.0, 8.0]",
}


def expected_state(order: dict[str, Any], shipment: dict[str, Any]) -> tuple[str, str | None]:
    """What ML's order and shipment map to, and the shipment status Peepers keeps."""
    ml = MlOrder.model_validate(order)
    ship = MlShipment.model_validate(shipment) if lifecycle.needs_shipment(ml) else None
    reached = lifecycle.milestones(ml, ship, now=datetime.now(UTC))
    return lifecycle.state_of(reached).value, ship.status if ship else None


@dataclass
class Audit:
    orders: int = 0
    events: int = 0
    distinct: int = 0
    mails: int = 0
    # Message-IDs the SMTP server received more than once (docs/orders.md: the window).
    mailed_twice: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class Deployment:
    auth: AuthStack
    run: OrdersRun
    kafka: KafkaSettings
    redis: aioredis.Redis
    sink: SmtpSink

    @property
    def market(self) -> Any:
        return self.auth.sandbox.state.market

    async def connect(self) -> None:
        """Log the seller in (the backfill), then let ML notify ingest."""
        async with self.auth.browser() as browser:
            await login(self.auth, browser)

        async def backfilled() -> bool:
            return any(e.type == "order.snapshot" for e in await self.events())

        await wait_until(backfilled, timeout_s=30, every_s=0.2)
        await self.auth.sandbox.admin.patch_notifier(
            enabled=True, retry_gaps_s=[0.2, 0.5, 1.0, 2.0, 4.0]
        )

    async def run_activity(self, rate: float, changes: int) -> None:
        admin = self.auth.sandbox.admin
        await admin.start_activity(rate, ORDER_MIX)

        async def made() -> bool:
            done = (await admin.notifier_summary())["delivered"]
            return bool(done >= changes)

        await wait_until(made, timeout_s=60, every_s=0.2)
        await admin.stop_activity()
        await admin.wait_notifier_idle(within_s=60)

    async def events(self) -> list[OrdersEvent]:
        records = await read_all(self.kafka, [self.run.topic(PEEPERS_ORDERS)])
        return [ORDERS_EVENT.validate_json(r.value or b"") for r in records]

    async def cached(self) -> dict[int, CachedOrder]:
        ids = list(self.market.orders_by_seller[SELLER])
        found = await self.run.store(self.redis).get_many(ids)
        return {order.summary.order_id: order for order in found}

    def differences(self, cached: dict[int, CachedOrder]) -> list[str]:
        """Every seller order in ML whose cached copy differs (state, amounts, shipment)."""
        market = self.market
        wrong = []
        for order_id in market.orders_by_seller[SELLER]:
            order = market.orders[order_id]
            shipment = market.shipments[order["shipping"]["id"]]
            mine = cached.get(order_id)
            if mine is None:
                wrong.append(f"{order_id}: not cached")
                continue
            state, ship_status = expected_state(order, shipment)
            summary = mine.summary
            got = (summary.state, summary.ml_status, summary.total_amount)
            want = (state, order["status"], Decimal(str(order["total_amount"])))
            if got != want or (ship_status is not None and summary.shipment_status != ship_status):
                wrong.append(
                    f"{order_id}: cached {got} {summary.shipment_status}, ML {want} {ship_status}"
                )
        return wrong

    async def wait_converged(self, *, timeout_s: float = 60) -> None:
        left: list[str] = []

        async def converged() -> bool:
            left[:] = self.differences(await self.cached())
            return not left

        try:
            await wait_until(converged, timeout_s=timeout_s, every_s=0.5)
        except AssertionError:
            msg = f"{len(left)} orders differ from ML: {left[:5]}"
            raise AssertionError(msg) from None

    async def wait_consumed(self, *, timeout_s: float = 30) -> None:
        """Until the worker's and the mailer's groups committed everything on their topics.

        The mailer's parked mails too: a mail whose claim a killed mailer still held is
        parked, and sent once the claim lapses (CI once audited before it was).
        """
        notifications = [self.run.topic(t) for t in NOTIFICATION_TOPICS]
        events = [self.run.topic(PEEPERS_ORDERS)]
        parked = [self.run.topic(retry_topic(PEEPERS_ORDERS))]

        async def consumed() -> bool:
            return (
                await caught_up(self.kafka, self.run.app_id, notifications)
                and await caught_up(self.kafka, self.run.mailer_id, events)
                and await caught_up(self.kafka, f"{self.run.mailer_id}-retry", parked)
            )

        await wait_until(consumed, timeout_s=timeout_s, every_s=0.5)

    async def audit(self) -> Audit:
        """One event id per real transition, one mail per mailed one, none twice."""
        events = await self.events()
        cached = await self.cached()
        result = Audit(orders=len(cached), events=len(events))
        by_id = {str(e.event_id): e for e in events}
        result.distinct = len(by_id)
        per_order: dict[int, list[str]] = {}
        for event in by_id.values():
            if event.type != "order.snapshot":
                per_order.setdefault(event.order_id, []).append(transition_of(event))
        for order_id, transitions in per_order.items():
            twice = [t for t, n in Counter(transitions).items() if n > 1]
            if twice:
                result.problems.append(f"{order_id}: {twice} announced under two ids")
            recorded = [t.state for t in cached[order_id].timeline] if order_id in cached else []
            if not set(transitions) <= set(recorded):
                result.problems.append(f"{order_id}: events {transitions}, timeline {recorded}")
        ids = self.sink.inbox.ids()
        result.mails = len(ids)
        result.mailed_twice = [mid for mid, n in Counter(ids).items() if n > 1]
        expected = {
            f"<order-{order_id}-{t}@peepers.local>"
            for order_id, transitions in per_order.items()
            for t in transitions
        }
        if set(ids) != expected:
            result.problems.append(
                f"mails != transitions: missing {sorted(expected - set(ids))[:5]}, "
                f"extra {sorted(set(ids) - expected)[:5]}"
            )
        return result


@asynccontextmanager
async def deployment(
    kafka: KafkaSettings,
    redis: aioredis.Redis,
    tmp_path: Path,
    sink: SmtpSink,
    *,
    extra_env: dict[str, str] | None = None,
) -> AsyncIterator[Deployment]:
    """One seller in the sandbox notifying a real ingest on the worker's topics.

    The worker is not started: ``async with ready_worker(d.run)`` (once or more).
    """
    prefix = await orders_topics(kafka)
    async with (
        auth_stack(kafka, topic=prefix + PEEPERS_SELLERS) as auth,
        running_ingest(kafka, tmp_path / "spool", prefix, application_id=DEMO_APP_ID) as ingest,
    ):
        await auth.sandbox.admin.patch_app(
            DEMO_APP_ID,
            callback_url=str(ingest.make_url(URL)),
            topics=["orders_v2", "shipments", "payments"],
        )
        run = OrdersRun(
            prefix=prefix,
            kafka=kafka,
            auth=auth,
            smtp_port=sink.port,
            log=tmp_path / "orders.log",
            extra_env={**ENV, **(extra_env or {})},
        )
        yield Deployment(auth=auth, run=run, kafka=kafka, redis=redis, sink=sink)
