"""The orders worker as it runs in production: ``python -m peepers_orders worker``, fed
through Kafka, reading ML (the sandbox) with tokens from the auth service's broker, and
mailing through a real SMTP server (aiosmtpd)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from peepers_common.consuming import H_ERROR_KIND
from peepers_common.kafka import AIOKafkaEventPublisher, caught_up
from peepers_common.namespaces import Namespace, connect_redis
from peepers_common.settings import KafkaSettings
from peepers_common.topics import PEEPERS_ORDERS, PEEPERS_SELLERS, dlq_topic
from peepers_orders.settings import Settings as OrdersSettings
from tests.integration.auth.harness import SELLER, auth_stack, login, read_all
from tests.integration.ingest.support import free_port
from tests.integration.orders.smtp import SmtpSink, smtp_sink
from tests.integration.orders.worker import (
    OrdersRun,
    mailer_process,
    notify,
    of_order,
    orders_topics,
    ready_worker,
    worker_only,
)
from tests.integration.workers import answers_ready
from tests.support import unique, wait_until

# Each test starts the sandbox, auth and a worker process (two, for the replay).
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def orders_redis() -> AsyncIterator[aioredis.Redis]:
    client = connect_redis(OrdersSettings().redis)
    yield client
    await client.aclose()


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with smtp_sink() as running:
        yield running


@pytest.fixture
async def deployed(
    kafka: KafkaSettings, tmp_path: Path, sink: SmtpSink
) -> AsyncIterator[OrdersRun]:
    prefix = await orders_topics(kafka)
    async with auth_stack(kafka, topic=prefix + PEEPERS_SELLERS) as auth:
        run = OrdersRun(
            prefix=prefix, kafka=kafka, auth=auth, smtp_port=sink.port, log=tmp_path / "orders.log"
        )
        async with ready_worker(run):
            async with auth.browser() as browser:
                await login(auth, browser)

            await wait_until(partial(_backfilled, run), timeout_s=20, every_s=0.2)
            yield run


async def _backfilled(run: OrdersRun) -> bool:
    return any(e["type"] == "order.snapshot" for e in await run.events())


async def _event(run: OrdersRun, kind: str, **params: Any) -> dict[str, Any]:
    return await run.auth.sandbox.admin.event(kind, **params)


class TestOrdersWorker:
    async def test_history_is_a_snapshot_and_sends_no_mail(
        self, deployed: OrdersRun, sink: SmtpSink
    ) -> None:
        events = await deployed.events()
        assert {e["type"] for e in events} == {"order.snapshot"}
        assert sink.inbox.snapshot() == []

    async def test_a_new_deployments_cache_becomes_ready_as_the_bench_waits(
        self, deployed: OrdersRun
    ) -> None:
        # bench.orders waits on this before it connects its seller (it waited on a key
        # the worker no longer writes, and crashed).
        await wait_until(deployed.cache_ready, timeout_s=20, every_s=0.2)

    async def test_each_transition_gives_one_event_and_one_email(
        self,
        deployed: OrdersRun,
        sink: SmtpSink,
        orders_redis: aioredis.Redis,
        kafka: KafkaSettings,
    ) -> None:
        order = await _event(deployed, "new_order", seller_id=SELLER)
        order_id = order["id"]
        for _ in range(2):  # ML delivers twice
            await notify(kafka, deployed, "orders_v2", f"/orders/{order_id}")
        paid = await _event(deployed, "payment", order_id=order_id)
        payment_id = paid["payments"][-1]["id"]
        await notify(kafka, deployed, "payments", f"/collections/{payment_id}")
        await _event(deployed, "shipment", order_id=order_id)
        shipment = f"/shipments/{order['shipping']['id']}"
        await notify(kafka, deployed, "shipments", shipment)
        await _event(deployed, "delivery", order_id=order_id)
        await notify(kafka, deployed, "shipments", shipment)
        await notify(kafka, deployed, "orders_v2", f"/orders/{order_id}")  # late and duplicate

        async def delivered() -> bool:
            return of_order(await deployed.events(), order_id)[-1:] == ["order.delivered"]

        await wait_until(delivered, timeout_s=20, every_s=0.2)
        assert of_order(await deployed.events(), order_id) == [
            "order.created",
            "order.paid",
            "order.shipped",
            "order.delivered",
        ]

        async def four_mails() -> bool:
            return len(sink.inbox.snapshot()) >= 4

        await wait_until(four_mails, timeout_s=20, every_s=0.2)
        ids = sink.inbox.ids()
        assert sorted(ids) == sorted(
            f"<order-{order_id}-{t}@peepers.local>"
            for t in ("created", "paid", "shipped", "delivered")
        )
        [first] = [
            m
            for m in sink.inbox.snapshot()
            if m["Message-ID"].endswith(f"{order_id}-created@peepers.local>")
        ]
        assert first["To"] == f"test_user_{SELLER}@testuser.com"
        cached = await deployed.cached(orders_redis, order_id)
        assert cached is not None
        assert (cached.summary.state, cached.summary.shipment_status) == ("delivered", "delivered")
        body = await deployed.get(f"/orders/orders/{order_id}")
        assert [t["state"] for t in body["timeline"]] == ["created", "paid", "shipped", "delivered"]
        listed = await deployed.get(f"/orders/sellers/{SELLER}/orders?state=delivered")
        assert listed["orders"][0]["order_id"] == order_id  # newest first
        assert {o["state"] for o in listed["orders"]} == {"delivered"}

        async def counted() -> bool:
            total = (await deployed.get(f"/orders/sellers/{SELLER}/analytics"))["total"]
            return bool(total["shipped_to_delivered"]["count"] == 1)

        await wait_until(counted, timeout_s=10, every_s=0.2)
        total = (await deployed.get(f"/orders/sellers/{SELLER}/analytics"))["total"]
        assert (total["orders"], total["units"]) == (1, order["order_items"][0]["quantity"])
        assert total["revenue"] == {"BRL": f"{order['total_amount']:.2f}"}
        assert total["paid_to_shipped"]["count"] == 1

    async def test_an_smtp_outage_delays_mail_and_loses_none(
        self,
        deployed: OrdersRun,
        sink: SmtpSink,
        kafka: KafkaSettings,
        orders_redis: aioredis.Redis,
    ) -> None:
        sink.stop()
        order = await _event(deployed, "new_order", seller_id=SELLER)
        await notify(kafka, deployed, "orders_v2", f"/orders/{order['id']}")

        async def cached() -> bool:
            return await deployed.cached(orders_redis, order["id"]) is not None

        await wait_until(cached, timeout_s=15)  # the cache does not wait for the mail
        await _event(deployed, "payment", order_id=order["id"])
        await notify(kafka, deployed, "orders_v2", f"/orders/{order['id']}")

        async def paid() -> bool:
            return "order.paid" in of_order(await deployed.events(), order["id"])

        await wait_until(paid, timeout_s=15)
        assert sink.inbox.snapshot() == []
        sink.start()

        async def mailed() -> bool:
            return len(sink.inbox.snapshot()) == 2

        await wait_until(mailed, timeout_s=25, every_s=0.2)
        assert sorted(sink.inbox.ids()) == [
            f"<order-{order['id']}-created@peepers.local>",
            f"<order-{order['id']}-paid@peepers.local>",
        ]

    async def test_a_malformed_record_goes_to_the_dlq_while_the_partition_moves_on(
        self, deployed: OrdersRun, kafka: KafkaSettings, orders_redis: aioredis.Redis
    ) -> None:
        topic = deployed.topic("ml.notifications.orders_v2")
        async with AIOKafkaEventPublisher(kafka) as publisher:
            await publisher.publish(
                topic, key=f"{SELLER}:/orders/1".encode(), value=b"\xffnot json"
            )
        await notify(kafka, deployed, "orders_v2", "/orders/../../oauth/token")
        order = await _event(deployed, "new_order", seller_id=SELLER)
        await notify(kafka, deployed, "orders_v2", f"/orders/{order['id']}")

        async def cached() -> bool:
            return await deployed.cached(orders_redis, order["id"]) is not None

        await wait_until(cached, timeout_s=15)
        dead = await read_all(kafka, dlq_topic(topic))
        assert sorted(dict(d.headers)[H_ERROR_KIND] for d in dead) == [b"malformed", b"permanent"]

    async def test_a_replay_from_the_start_after_a_lost_ledger_view_sends_nothing_twice(
        self,
        deployed: OrdersRun,
        sink: SmtpSink,
        kafka: KafkaSettings,
        orders_redis: aioredis.Redis,
    ) -> None:
        order = await _paid_and_mailed(deployed, sink, kafka)
        # The ledger's Redis view is lost (as in a FLUSHALL of the service's keys) ...
        namespace = Namespace("orders", scope=deployed.scope)
        lost = [namespace.key("changelog", "emails", "epoch")] + [
            namespace.key("mail", f"{order['id']}:{t}") for t in ("created", "paid")
        ]
        assert await orders_redis.delete(*lost) == 3
        # ... and a new mailer group replays peepers.orders.v1 from its start.
        replay = replace(
            deployed,
            mailer_id=unique("mailer"),
            port=free_port(),
            mailer_port=free_port(),
            log=deployed.log.with_name("replay.log"),
        )
        async with ready_worker(replay):

            async def replayed() -> bool:
                return await _duplicates(replay) >= 2

            await wait_until(replayed, timeout_s=25, every_s=0.2)
        assert len(sink.inbox.snapshot()) == 2

    async def test_a_lost_cache_is_noticed_and_rebuilt_without_mail_or_double_counts(
        self,
        deployed: OrdersRun,
        sink: SmtpSink,
        kafka: KafkaSettings,
        orders_redis: aioredis.Redis,
    ) -> None:
        order = await _paid_and_mailed(deployed, sink, kafka)

        async def counted() -> bool:
            total = (await deployed.get(f"/orders/sellers/{SELLER}/analytics"))["total"]
            return bool(total["orders"] == 1 and total["revenue"])

        await wait_until(counted, timeout_s=10, every_s=0.2)
        # Every key of the service's namespace goes (a FLUSHALL, as far as it can tell).
        namespace = Namespace("orders", scope=deployed.scope)
        keys = [key async for key in orders_redis.scan_iter(match=namespace.prefix + "*")]
        assert await orders_redis.delete(*keys) == len(keys)

        async def rebuilt() -> bool:
            cached = await deployed.cached(orders_redis, order["id"])
            ready = (await deployed.get("/readyz"))["cache"] == "ready"
            return ready and cached is not None and cached.summary.state == "paid"

        await wait_until(rebuilt, timeout_s=20, every_s=0.2)
        await wait_until(counted, timeout_s=10, every_s=0.2)
        total = (await deployed.get(f"/orders/sellers/{SELLER}/analytics"))["total"]
        assert total["orders"] == 1
        types = [e["type"] for e in await deployed.events() if e["order_id"] == order["id"]]
        assert types[-1] == "order.snapshot"  # found again: a snapshot, never created again
        assert len(sink.inbox.snapshot()) == 2


async def test_the_worker_mails_nothing_and_the_mailer_process_mails_what_it_left(
    kafka: KafkaSettings, tmp_path: Path, sink: SmtpSink, orders_redis: aioredis.Redis
) -> None:
    prefix = await orders_topics(kafka)
    async with auth_stack(kafka, topic=prefix + PEEPERS_SELLERS) as auth:
        run = OrdersRun(
            prefix=prefix, kafka=kafka, auth=auth, smtp_port=sink.port, log=tmp_path / "orders.log"
        )
        events = [run.topic(PEEPERS_ORDERS)]
        with worker_only(run):
            await wait_until(partial(answers_ready, run.url), timeout_s=40, every_s=0.2)
            async with auth.browser() as browser:
                await login(auth, browser)
            # The sale comes after the connection's backfill, as in the fixture: under load
            # one made while the backfill ran was read by it as history (an order.snapshot,
            # so no order.created came and the wait below timed out).
            await wait_until(partial(_backfilled, run), timeout_s=20, every_s=0.2)
            order = await _event(run, "new_order", seller_id=SELLER)
            await notify(kafka, run, "orders_v2", f"/orders/{order['id']}")

            async def created() -> bool:
                return "order.created" in of_order(await run.events(), order["id"])

            async def analysed() -> bool:  # the worker's own agent took the event
                return await caught_up(kafka, run.app_id, events)

            await wait_until(created, timeout_s=40, every_s=0.2)
            await wait_until(analysed, timeout_s=40, every_s=0.2)
            # No SMTP from the worker: the mailer's group has not even read the event.
            assert sink.inbox.snapshot() == []
            assert not await caught_up(kafka, run.mailer_id, events)
        with mailer_process(run):

            async def mailed() -> bool:
                return len(sink.inbox.snapshot()) == 1

            try:
                await wait_until(mailed, timeout_s=40, every_s=0.2)
            except AssertionError:
                raise AssertionError(run.log_tail()) from None
        (mid,) = sink.inbox.ids()
        assert mid.startswith(f"<order-{order['id']}-created@")


async def _paid_and_mailed(run: OrdersRun, sink: SmtpSink, kafka: KafkaSettings) -> dict[str, Any]:
    """A new order, paid, notified once: its two mails (created, paid) are out."""
    order = await _event(run, "new_order", seller_id=SELLER)
    await _event(run, "payment", order_id=order["id"])
    await notify(kafka, run, "orders_v2", f"/orders/{order['id']}")

    async def mailed() -> bool:
        return len(sink.inbox.snapshot()) == 2

    await wait_until(mailed, timeout_s=20, every_s=0.2)
    return order


async def _duplicates(run: OrdersRun) -> float:
    """Mails the mailer skipped because its ledger had them (its /metrics)."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{run.mailer_url}/metrics") as response,
    ):
        text = await response.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "peepers_orders_emails_total"
                and sample.labels["outcome"] == "duplicate"
            ):
                return sample.value
    return 0.0
