"""The mailer's consumer loop across a rebalance, on the real Kafka broker."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaProducer
from aiosmtpd.smtp import SMTP, Envelope, Session
from pydantic import SecretStr

from peepers_common.consuming import InboundRecord
from peepers_common.events import OrderCreated, OrderEvent, OrderLine, OrderPaid, OrderSummary
from peepers_common.kafka import caught_up
from peepers_common.settings import KafkaSettings, RedisSettings
from peepers_common.topics import PEEPERS_ORDERS, PEEPERS_SELLERS
from peepers_orders.mailer import GroupLoop
from tests.integration.auth.harness import SELLER, auth_stack, login
from tests.integration.ingest.support import free_port
from tests.integration.orders.smtp import Inbox, SmtpSink
from tests.integration.orders.worker import OrdersRun, mailer_process, orders_topics
from tests.integration.workers import answers_ready
from tests.support import create_topic, private_redis, unique, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

PER_PARTITION = 20


async def test_a_partition_taken_away_mid_batch_is_left_to_its_new_owner(
    kafka: KafkaSettings, caplog: pytest.LogCaptureFixture
) -> None:
    # The first process holds its first record while a second one joins the group: the
    # rebalance takes one of its two partitions away in the middle of its batch. The rest
    # of that batch is the new owner's; the old one neither handles it nor restarts (one
    # more rebalance for the whole group) when its commit is refused.
    topic = await create_topic(kafka, partitions=2)
    group = unique("mailer")
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    await producer.start()
    try:
        for partition in (0, 1):
            for n in range(PER_PARTITION):
                await producer.send_and_wait(
                    topic, f"{partition}:{n}".encode(), partition=partition
                )
    finally:
        await producer.stop()

    handled: dict[str, Counter[tuple[int, int]]] = {"old": Counter(), "new": Counter()}
    first = asyncio.Event()
    go = asyncio.Event()

    async def old(record: InboundRecord) -> None:
        first.set()
        await go.wait()
        handled["old"][(record.partition, record.offset)] += 1

    async def new(record: InboundRecord) -> None:
        handled["new"][(record.partition, record.offset)] += 1

    caplog.set_level(logging.WARNING, logger="peepers_orders.mailer")
    tasks = [asyncio.create_task(GroupLoop(kafka, topic=topic, group=group, handle=old).run())]
    try:
        await asyncio.wait_for(first.wait(), timeout=30)
        tasks.append(
            asyncio.create_task(GroupLoop(kafka, topic=topic, group=group, handle=new).run())
        )

        async def taken_over() -> bool:  # the new owner drained the partition it took
            return len(handled["new"]) >= PER_PARTITION

        await wait_until(taken_over, timeout_s=45)
        go.set()

        async def all_committed() -> bool:
            return await caught_up(kafka, group, [topic])

        await wait_until(all_committed, timeout_s=30)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    both = handled["old"].keys() & handled["new"].keys()
    assert len(both) <= 1  # at most the record in hand when the partition went
    assert len(handled["old"].keys() | handled["new"].keys()) == 2 * PER_PARTITION
    assert not [r for r in caplog.records if "restarting" in r.getMessage()]


@dataclass
class SlowInbox(Inbox):
    """An SMTP server that takes a while over each message: the backlog lasts."""

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        await asyncio.sleep(0.05)
        return await super().handle_DATA(server, session, envelope)


ORDERS = 100


def _events(seller_id: int) -> list[OrderEvent]:
    now = datetime.now(UTC)
    events: list[OrderEvent] = []
    for n in range(ORDERS):
        order_id = 7_000_000 + n
        summary = OrderSummary(
            order_id=order_id,
            state="paid",
            ml_status="paid",
            buyer_id=9001,
            currency_id="BRL",
            total_amount=Decimal("10"),
            paid_amount=Decimal("10"),
            lines=(OrderLine(item_id="MLB1", title="Item", quantity=1, unit_price=Decimal("10")),),
            date_created=now,
            paid_at=now,
        )
        common: dict[str, Any] = {
            "occurred_at": now,
            "seller_id": seller_id,
            "order_id": order_id,
            "order": summary,
            "revealed_by": "notification:test",
        }
        events += [OrderCreated(event_id=uuid4(), **common), OrderPaid(event_id=uuid4(), **common)]
    return events


async def test_two_mailer_processes_and_a_rebalance_mid_drain_mail_each_transition_once(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    # A backlog of 200 transitions; one mailer process drains it, a second joins the group
    # in the middle of it (the rebalance hands partitions over mid-batch). Each mail is
    # received once, counted by Message-ID at the SMTP server. A Redis of the test's own.
    prefix = await orders_topics(kafka)
    sink = SmtpSink(SlowInbox(), free_port())
    sink.start()
    try:
        async with (
            private_redis(tmp_path, users=("auth", "orders")) as url,
            auth_stack(
                kafka,
                topic=prefix + PEEPERS_SELLERS,
                redis=RedisSettings(url=url, username="auth", password=SecretStr("any")),
            ) as auth,
        ):
            async with auth.browser() as browser:
                await login(auth, browser)
            run = OrdersRun(
                prefix=prefix,
                kafka=kafka,
                auth=auth,
                smtp_port=sink.port,
                log=tmp_path / "a.log",
                extra_env={"ORDERS_REDIS__URL": url},
            )
            second = replace(run, mailer_port=free_port(), log=tmp_path / "b.log")
            topic = run.topic(PEEPERS_ORDERS)
            producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
            await producer.start()
            try:
                for event in _events(SELLER):
                    await producer.send(
                        topic, event.model_dump_json().encode(), key=str(event.order_id).encode()
                    )
                await producer.flush()
            finally:
                await producer.stop()

            with mailer_process(run):

                async def started() -> bool:
                    return len(sink.inbox.snapshot()) >= 5

                await wait_until(started, timeout_s=60, every_s=0.2)
                with mailer_process(second):
                    await wait_until(
                        partial(answers_ready, second.mailer_url), timeout_s=60, every_s=0.1
                    )
                    joined = len(sink.inbox.snapshot())

                    async def drained() -> bool:
                        return len(set(sink.inbox.ids())) == 2 * ORDERS and await caught_up(
                            kafka, run.mailer_id, [topic]
                        )

                    try:
                        await wait_until(drained, timeout_s=90, every_s=0.2)
                    except AssertionError:
                        raise AssertionError(run.log_tail() + second.log_tail()) from None
    finally:
        sink.stop()
    assert joined < 2 * ORDERS, "the second process joined after the drain"
    ids = Counter(sink.inbox.ids())
    assert [mid for mid, n in ids.items() if n > 1] == []
    assert len(ids) == 2 * ORDERS
