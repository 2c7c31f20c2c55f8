"""The orders service's Redis adapters on the real Redis, as the orders ACL user."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import date, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import redis.asyncio as aioredis

from peepers_common.changelog import Changelog, RedisViewMarker
from peepers_common.errors import CacheUnavailable, InvalidQuery
from peepers_common.events import OrderLine, OrderSummary
from peepers_common.kafka import AIOKafkaEventPublisher, read_to_end
from peepers_common.namespaces import Namespace, connect_redis
from peepers_common.settings import KafkaSettings
from peepers_common.testing import InMemoryEventPublisher
from peepers_common.topics import ORDERS_EMAILS_CHANGELOG, PEEPERS_ORDERS, topic_spec
from peepers_orders.adapters.mail_ledger import (
    ChangelogMailLedger,
    RedisMailClaims,
    RedisMailView,
)
from peepers_orders.adapters.redis_analytics import RedisAnalytics
from peepers_orders.adapters.redis_store import RedisOrderStore, RedisSellerDirectory
from peepers_orders.analytics import Counted
from peepers_orders.handlers import Orders, apply_order
from peepers_orders.ports import CachedOrder, OrderQuery, PackLink
from peepers_orders.settings import Settings
from tests.integration.orders.worker import orders_topics
from tests.support import create_topic, unique, wait_until
from tests.unit.orders.fakes import (
    SELLER,
    T0,
    InMemoryOrderStore,
    InMemorySellers,
    Market,
    ml_order,
)


@pytest.fixture
async def orders_redis() -> AsyncIterator[aioredis.Redis]:
    client = connect_redis(Settings().redis)
    yield client
    await client.aclose()


@pytest.fixture
def namespace() -> Namespace:
    return Namespace("orders", scope=unique("ord"))


def order(
    order_id: int, *, state: str = "created", minutes: int = 0, buyer: int = 1, item: str = "MLB1"
) -> CachedOrder:
    return CachedOrder(
        seller_id=SELLER,
        summary=OrderSummary(
            order_id=order_id,
            state=state,
            ml_status="paid" if state != "created" else "confirmed",
            buyer_id=buyer,
            currency_id="BRL",
            total_amount=Decimal("10.00"),
            lines=(OrderLine(item_id=item, title="x", quantity=1, unit_price=Decimal("10")),),
            shipment_id=order_id + 1000,
            date_created=T0 + timedelta(minutes=minutes),
        ),
    )


class TestOrderStore:
    async def test_a_write_is_a_compare_and_set_with_its_outbox(
        self, orders_redis, namespace
    ) -> None:
        store = RedisOrderStore(orders_redis, namespace)
        assert await store.put(order(1), expected_version=0, pending=b"[1]")
        assert not await store.put(order(1, state="paid"), expected_version=0, pending=None)
        stored = await store.load(1)
        assert (stored.version, stored.pending, stored.order) == (1, b"[1]", order(1))
        await store.clear_pending(1, b"[other]")
        assert (await store.load(1)).pending == b"[1]"
        await store.clear_pending(1, b"[1]")
        assert (await store.load(1)).pending is None
        assert await store.orders_of_shipment(1001) == [1]

    async def test_an_order_moves_between_state_indexes(self, orders_redis, namespace) -> None:
        store = RedisOrderStore(orders_redis, namespace)
        await store.put(order(1), expected_version=0, pending=None)
        await store.put(order(2), expected_version=0, pending=None)
        await store.put(order(1, state="paid"), expected_version=1, pending=None)
        assert await store.count_by_state(SELLER) == {"created": 1, "paid": 1}
        page = await store.search(OrderQuery(seller_id=SELLER, state="paid"))
        assert [o.summary.order_id for o in page.orders] == [1]

    async def test_lists_page_newest_first_by_cursor_with_filters(
        self, orders_redis, namespace
    ) -> None:
        store = RedisOrderStore(orders_redis, namespace)
        for n in range(1, 8):
            await store.put(
                order(n, minutes=n, buyer=n % 2, item=f"MLB{n % 3}"),
                expected_version=0,
                pending=None,
            )
        seen: list[int] = []
        cursor = None
        while True:
            page = await store.search(OrderQuery(seller_id=SELLER, limit=3, cursor=cursor))
            seen += [o.summary.order_id for o in page.orders]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == [7, 6, 5, 4, 3, 2, 1]
        by_buyer = await store.search(OrderQuery(seller_id=SELLER, buyer_id=1, item_id="MLB1"))
        assert [o.summary.order_id for o in by_buyer.orders] == [7, 1]
        ranged = await store.search(
            OrderQuery(
                seller_id=SELLER,
                created_from=T0 + timedelta(minutes=3),
                created_to=T0 + timedelta(minutes=5),
            )
        )
        assert [o.summary.order_id for o in ranged.orders] == [5, 4, 3]
        with pytest.raises(InvalidQuery):
            await store.search(OrderQuery(seller_id=SELLER, cursor="nonsense"))

    async def test_a_pack_links_its_orders_and_their_shipment(
        self, orders_redis, namespace
    ) -> None:
        store = RedisOrderStore(orders_redis, namespace)
        await store.link_pack(PackLink(pack_id=9, order_ids=(1, 2), shipment_id=500))
        assert await store.pack(9) == PackLink(pack_id=9, order_ids=(1, 2), shipment_id=500)
        assert await store.orders_of_shipment(500) == [1, 2]


class TestSellerDirectory:
    async def test_the_first_connection_stays_and_a_lost_epoch_begins_again(
        self, orders_redis, namespace
    ) -> None:
        sellers = RedisSellerDirectory(orders_redis, namespace)
        await sellers.connected(SELLER, T0)
        await sellers.connected(SELLER, T0 + timedelta(days=1))
        assert await sellers.connected_at(SELLER) == T0
        first = await sellers.epoch_started_at()
        assert await sellers.epoch_started_at() == first
        await orders_redis.delete(namespace.key("epoch"))
        assert await sellers.epoch_started_at() > first


class TestClaims:
    async def test_a_mail_has_one_sender_process_until_its_claim_lapses(
        self, orders_redis, namespace
    ) -> None:
        mine = RedisMailClaims(orders_redis, namespace, ttl_s=0.3)
        other = RedisMailClaims(orders_redis, namespace, ttl_s=0.3)
        assert await mine.take("1:paid")
        assert await mine.take("1:paid")  # a retry in the same process renews it
        assert not await other.take("1:paid")
        assert await other.take("1:created")  # another mail is free

        async def lapsed() -> bool:  # the holder died mid-send: its claim's ttl runs out
            return await other.take("1:paid")

        await wait_until(lapsed, timeout_s=3, every_s=0.05)

    async def test_a_sellers_backfill_has_one_run_and_is_let_go_at_its_end(
        self, orders_redis, namespace
    ) -> None:
        sellers = RedisSellerDirectory(orders_redis, namespace)
        assert await sellers.claim(SELLER, "run-a", 60)
        assert not await sellers.claim(SELLER, "run-b", 60)
        await sellers.release(SELLER, "run-b")  # not its holder: nothing changes
        assert not await sellers.claim(SELLER, "run-b", 60)
        await sellers.release(SELLER, "run-a")

        async def free() -> bool:
            return await sellers.claim(SELLER, "run-b", 60)

        await wait_until(free, timeout_s=2, every_s=0.01)


class TestAnalytics:
    async def test_a_transition_counts_once_and_days_give_percentiles(
        self, orders_redis, namespace
    ) -> None:
        analytics = RedisAnalytics(orders_redis, namespace)
        day = date(2026, 11, 2)
        for n, seconds in enumerate((60.0, 120.0, 180.0, 240.0)):
            counted = Counted(
                transition_id=f"t{n}",
                seller_id=SELLER,
                day=day,
                counters={"orders": 1, "units": 2, "revenue:BRL": 1050},
                duration=("paid_to_shipped", n, seconds),
            )
            assert await analytics.count(counted)
            assert not await analytics.count(counted)
        [figures] = await analytics.days(SELLER, day, day)
        assert (figures.orders, figures.units, figures.revenue) == (4, 8, {"BRL": Decimal("42")})
        assert sorted(figures.paid_to_shipped_s) == [60.0, 120.0, 180.0, 240.0]
        assert await analytics.days(SELLER, day + timedelta(days=1), day + timedelta(days=9)) == []

    async def test_a_rebuild_fills_a_new_generation_the_live_agent_also_feeds(
        self, orders_redis, namespace
    ) -> None:
        live = RedisAnalytics(orders_redis, namespace)
        day = date(2026, 11, 2)

        def one(name: str) -> Counted:
            return Counted(transition_id=name, seller_id=SELLER, day=day, counters={"orders": 1})

        await live.count(one("old"))
        await live.begin_rebuild("g2")
        rebuilt = RedisAnalytics(orders_redis, namespace, generation="g2")
        await live.count(one("during"))  # the live agent, while the replay runs
        for name in ("old", "during"):  # the replay
            await rebuilt.count(one(name))
        assert (await live.days(SELLER, day, day))[0].orders == 2  # still the old one
        await live.finish_rebuild("g2")
        assert (await live.days(SELLER, day, day))[0].orders == 2
        await live.count(one("after"))
        assert (await live.days(SELLER, day, day))[0].orders == 3


async def test_the_rebuild_command_replays_the_topic_into_a_new_generation(
    orders_redis, namespace, kafka: KafkaSettings
) -> None:
    market = Market()
    market.add(ml_order())
    market.pay(2000001)
    prefix = await orders_topics(kafka)
    publisher = InMemoryEventPublisher()
    orders = Orders(
        ml=market.ml,
        store=InMemoryOrderStore(),
        sellers=InMemorySellers(),
        publisher=publisher,
        events_topic=prefix + PEEPERS_ORDERS,
    )
    await apply_order(market.ml.orders[2000001], "notification:n1", orders)
    async with AIOKafkaEventPublisher(kafka) as kafka_publisher:
        for record in [*publisher.records, *publisher.records]:  # and a redelivery
            await kafka_publisher.publish(record.topic, key=record.key, value=record.value)
    redis = Settings().redis
    assert redis.password is not None
    env = {
        "ORDERS_REDIS__URL": redis.url,
        "ORDERS_TOPIC_PREFIX": prefix,
        "ORDERS_REDIS_SCOPE": namespace.prefix.split(":")[1],
        "ORDERS_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "ORDERS_REDIS__PASSWORD": redis.password.get_secret_value(),
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "peepers_orders", "analytics", "rebuild"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "4 events replayed" in done.stdout
    generation = await orders_redis.get(namespace.key("analytics", "generation"))
    assert generation is not None
    day = T0.astimezone(ZoneInfo("America/Sao_Paulo")).date()
    [figures] = await RedisAnalytics(orders_redis, namespace).days(SELLER, day, day)
    assert (figures.orders, figures.units, figures.revenue) == (1, 2, {"BRL": Decimal("120.5")})


class FailingOnce(RedisMailView):
    """The real view, whose next write fails as when Redis goes away."""

    fail_next = False

    async def set(self, ledger_key: str, value: bytes) -> None:
        if self.fail_next:
            self.fail_next = False
            msg = "Redis failed while writing the mail ledger"
            raise CacheUnavailable(msg)
        await super().set(ledger_key, value)


class TestMailLedger:
    async def test_a_send_whose_view_write_fails_is_kept_and_reads_as_sent(
        self, orders_redis, namespace, kafka: KafkaSettings
    ) -> None:
        topic = await create_topic(kafka, like=topic_spec(ORDERS_EMAILS_CHANGELOG))
        view = FailingOnce(orders_redis, namespace)
        marker = RedisViewMarker(orders_redis, namespace, "emails")
        async with Changelog(kafka, topic, view=view, marker=marker) as changelog:
            ledger = ChangelogMailLedger(changelog, view)
            view.fail_next = True  # Redis goes away right after the SMTP server's 250
            with pytest.raises(CacheUnavailable):
                await ledger.record("1:created", "<order-1-created@x>")
            # The record's retry asks first: the mail went out, and the view now says so.
            assert await ledger.sent("1:created")
            assert await view.get("1:created") == b"<order-1-created@x>"
        records = await read_to_end(kafka, [topic])
        assert [(r.key, r.value) for r in records] == [(b"1:created", b"<order-1-created@x>")]

    async def test_a_send_cut_short_before_the_changelog_is_finished_by_the_next_lookup(
        self, orders_redis, namespace, kafka: KafkaSettings
    ) -> None:
        topic = await create_topic(kafka, like=topic_spec(ORDERS_EMAILS_CHANGELOG))
        view = RedisMailView(orders_redis, namespace)
        marker = RedisViewMarker(orders_redis, namespace, "emails")
        async with Changelog(kafka, topic, view=view, marker=marker) as changelog:
            ledger = ChangelogMailLedger(changelog, view)
            await ledger.record("1:paid", "<order-1-paid@x>")
            # A worker died after the view's pending mark, before the changelog write.
            await view.set("2:paid", b"pending:<order-2-paid@x>")
            assert not await ledger.sent("3:paid")
            assert await ledger.sent("1:paid")
            assert await ledger.sent("2:paid")
            assert await view.get("2:paid") == b"<order-2-paid@x>"
        records = await read_to_end(kafka, [topic])
        assert sorted((r.key, r.value) for r in records) == [
            (b"1:paid", b"<order-1-paid@x>"),
            (b"2:paid", b"<order-2-paid@x>"),
        ]
