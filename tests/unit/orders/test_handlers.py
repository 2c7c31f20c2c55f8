"""The orders handlers driven as the worker drives them, over fakes of every port."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from peepers_common.errors import PublishError
from peepers_common.events import ORDERS_EVENT, order_event_id
from peepers_common.ml.models import MlPack
from peepers_common.notifications import Notification
from peepers_common.testing import InMemoryEventPublisher
from peepers_orders.errors import InvalidOrderNotification, ShipmentNotLinked
from peepers_orders.handlers import Orders, Outcome, apply_order, on_notification
from tests.unit.orders.conftest import EVENTS
from tests.unit.orders.fakes import SELLER, T0, InMemoryOrderStore, Market, ml_order


def note(
    resource: str, topic: str = "orders_v2", user_id: int = SELLER, nid: str = "n1"
) -> Notification:
    return Notification.model_validate(
        {"_id": nid, "resource": resource, "user_id": user_id, "topic": topic, "application_id": 1}
    )


def published(orders: Orders) -> list[dict[str, Any]]:
    assert isinstance(orders.publisher, InMemoryEventPublisher)
    return [json.loads(r.value) for r in orders.publisher.on(EVENTS)]


def types(orders: Orders) -> list[str]:
    return [e["type"] for e in published(orders)]


def store(orders: Orders) -> InMemoryOrderStore:
    assert isinstance(orders.store, InMemoryOrderStore)
    return orders.store


class TestTransitions:
    async def test_a_new_sale_is_cached_and_announced_as_created(
        self, market: Market, orders: Orders
    ) -> None:
        market.add(ml_order())
        assert await on_notification(note("/orders/2000001"), orders) == Outcome.CREATED
        [event] = published(orders)
        assert event["type"] == "order.created"
        assert event["event_id"] == str(order_event_id(2000001, "order.created", "created"))
        assert event["revealed_by"] == "notification:n1"
        cached = store(orders).order(2000001)
        assert cached.summary.state == "created"
        assert [e.state for e in cached.timeline] == ["created"]

    async def test_a_redelivered_notification_changes_nothing(
        self, market: Market, orders: Orders
    ) -> None:
        market.add(ml_order())
        await on_notification(note("/orders/2000001"), orders)
        writes = store(orders).writes
        assert await on_notification(note("/orders/2000001"), orders) == Outcome.UNCHANGED
        assert types(orders) == ["order.created"]
        assert store(orders).writes == writes

    async def test_an_order_two_steps_ahead_records_every_step_between_in_order(
        self, market: Market, orders: Orders
    ) -> None:
        market.add(ml_order())
        await on_notification(note("/orders/2000001"), orders)
        market.pay(2000001)
        market.ship(2000001, "delivered")
        assert await on_notification(note("/orders/2000001", nid="n2"), orders) == Outcome.ADVANCED
        assert types(orders) == ["order.created", "order.paid", "order.shipped", "order.delivered"]
        cached = store(orders).order(2000001)
        assert cached.summary.state == "delivered"
        assert cached.summary.shipment_status == "delivered"
        assert [e.revealed_by for e in cached.timeline] == ["notification:n1"] + [
            "notification:n2"
        ] * 3

    async def test_a_lagging_fetch_never_moves_the_state_back(
        self, market: Market, orders: Orders
    ) -> None:
        market.add(ml_order())
        paid = market.pay(2000001)
        market.ship(2000001)
        await on_notification(note("/orders/2000001"), orders)
        # A reordered notification answered by an older view of the order (no shipment news).
        outcome = await apply_order(ml_order(status="confirmed"), "notification:old", orders)
        assert outcome in (Outcome.UPDATED, Outcome.UNCHANGED)
        assert store(orders).order(paid.id).summary.state == "shipped"
        assert types(orders) == ["order.created", "order.paid", "order.shipped"]

    async def test_each_transition_is_one_event_with_a_deterministic_id(
        self, market: Market, orders: Orders
    ) -> None:
        market.add(ml_order())
        await on_notification(note("/orders/2000001"), orders)
        market.pay(2000001)
        await on_notification(note("/orders/2000001", nid="n2"), orders)
        market.cancel(2000001)
        await on_notification(note("/orders/2000001", nid="n3"), orders)
        await on_notification(note("/orders/2000001", nid="n3"), orders)
        events = published(orders)
        assert [e["type"] for e in events] == [
            "order.created",
            "order.paid",
            "order.refunded",
            "order.cancelled",
        ]
        assert len({e["event_id"] for e in events}) == 4
        assert events[2]["partial"] is False
        assert store(orders).order(2000001).summary.state == "cancelled"

    async def test_a_part_refund_then_a_full_one_are_two_refund_events(
        self, market: Market, orders: Orders
    ) -> None:
        market.add(ml_order())
        market.pay(2000001)
        await on_notification(note("/orders/2000001"), orders)
        market.refund(2000001, 20.0)
        await on_notification(note("/orders/2000001", nid="n2"), orders)
        market.refund(2000001, 120.5)
        await on_notification(note("/orders/2000001", nid="n3"), orders)
        refunds = [e for e in published(orders) if e["type"] == "order.refunded"]
        assert [e["partial"] for e in refunds] == [True, False]
        assert refunds[0]["event_id"] != refunds[1]["event_id"]


class TestSnapshots:
    async def test_an_order_older_than_the_connection_is_a_snapshot(
        self, market: Market, orders: Orders, sellers
    ) -> None:
        sellers.connections[SELLER] = T0 + timedelta(days=1)
        market.add(ml_order())
        market.pay(2000001)
        assert await on_notification(note("/orders/2000001"), orders) == Outcome.SNAPSHOT
        [event] = published(orders)
        assert (event["type"], event["order"]["state"]) == ("order.snapshot", "paid")
        assert [e.state for e in store(orders).order(2000001).timeline] == ["created", "paid"]

    async def test_an_order_found_again_after_the_cache_was_lost_is_a_snapshot(
        self, market: Market, orders: Orders, sellers
    ) -> None:
        sellers.connections.clear()  # lost with the cache
        sellers.epoch = T0 + timedelta(hours=1)
        market.add(ml_order())
        assert await on_notification(note("/orders/2000001"), orders) == Outcome.SNAPSHOT

    async def test_transitions_after_a_snapshot_are_announced(
        self, market: Market, orders: Orders, sellers
    ) -> None:
        sellers.connections[SELLER] = T0 + timedelta(days=1)
        market.add(ml_order())
        await on_notification(note("/orders/2000001"), orders)
        market.pay(2000001)
        await on_notification(note("/orders/2000001", nid="n2"), orders)
        assert types(orders) == ["order.snapshot", "order.paid"]


class TestShipmentsPaymentsAndPacks:
    async def test_a_shipment_notification_advances_its_order(
        self, market: Market, orders: Orders
    ) -> None:
        market.add(ml_order())
        market.pay(2000001)
        await on_notification(note("/orders/2000001"), orders)
        market.ship(2000001)
        assert (
            await on_notification(note("/shipments/4000001", "shipments"), orders)
            == Outcome.ADVANCED
        )
        assert types(orders)[-1] == "order.shipped"

    async def test_a_shipment_of_no_cached_order_waits_for_its_order(self, orders: Orders) -> None:
        with pytest.raises(ShipmentNotLinked):
            await on_notification(note("/shipments/4000999", "shipments"), orders)

    async def test_a_shipment_of_no_cached_order_during_a_rebuild_is_left_to_it(
        self, orders: Orders
    ) -> None:
        # Parked, it would be dead-lettered before the rebuild's backfill caches its order
        # (the proof's ShipmentNotLinked records around a Redis flush).
        rebuilding = replace(orders, rebuilding=lambda: True)
        outcome = await on_notification(note("/shipments/4000999", "shipments"), rebuilding)
        assert outcome == Outcome.LEFT_TO_REBUILD

    async def test_a_payment_notification_fetches_its_order(
        self, market: Market, orders: Orders
    ) -> None:
        market.add(ml_order())
        await on_notification(note("/orders/2000001"), orders)
        market.pay(2000001)
        assert (
            await on_notification(note("/collections/5000001", "payments"), orders)
            == Outcome.ADVANCED
        )
        assert types(orders) == ["order.created", "order.paid"]

    async def test_the_orders_of_a_pack_keep_their_own_states_and_share_the_shipment(
        self, market: Market, orders: Orders
    ) -> None:
        first = market.add(ml_order(2000001))
        second = market.add(ml_order(2000002))
        market.ml.packs[3000001] = MlPack.model_validate(
            {
                "id": 3000001,
                "shipment": {"id": 4000001},
                "orders": [{"id": first.id}, {"id": second.id}],
            }
        )
        market.pay(2000001)
        await on_notification(note("/orders/2000001"), orders)
        assert await store(orders).orders_of_shipment(4000001) == [2000001, 2000002]
        await on_notification(note("/orders/2000002", nid="n2"), orders)
        assert store(orders).order(2000001).summary.state == "paid"
        assert store(orders).order(2000002).summary.state == "created"
        assert ("get_pack", 3000001) in market.ml.calls
        assert market.ml.calls.count(("get_pack", 3000001)) == 1


class TestBadInput:
    @pytest.mark.parametrize(
        ("resource", "topic"),
        [
            ("/orders/../../oauth/token", "orders_v2"),
            ("/orders/2000001/../../oauth/token", "orders_v2"),
            ("/orders/2000001?access_token=x", "orders_v2"),
            ("/orders/abc", "orders_v2"),
            ("/orders/0", "orders_v2"),
            ("/orders/2000001/", "orders_v2"),
            ("/shipments/4000001", "orders_v2"),
            ("/orders/2000001", "shipments"),
            ("/payments/5000001", "payments"),
            ("/orders/2000001", "items"),
        ],
    )
    async def test_a_resource_outside_the_strict_patterns_is_refused_before_any_call(
        self, market: Market, orders: Orders, resource: str, topic: str
    ) -> None:
        market.add(ml_order())
        with pytest.raises(InvalidOrderNotification):
            await on_notification(note(resource, topic), orders)
        assert market.ml.calls == []
        assert published(orders) == []

    async def test_an_order_of_another_seller_is_refused(
        self, market: Market, orders: Orders
    ) -> None:
        market.add(ml_order())
        with pytest.raises(InvalidOrderNotification):
            await on_notification(note("/orders/2000001", user_id=SELLER + 1), orders)
        assert store(orders).records == {}


class TestOutbox:
    async def test_events_of_a_write_whose_publish_failed_go_out_first_next_time(
        self, market: Market, orders: Orders
    ) -> None:
        publisher = orders.publisher
        assert isinstance(publisher, InMemoryEventPublisher)
        market.add(ml_order())
        publisher.failures.append(PublishError("kafka down"))
        with pytest.raises(PublishError):
            await on_notification(note("/orders/2000001"), orders)
        assert store(orders).records[2000001].pending is not None
        market.pay(2000001)
        await on_notification(note("/orders/2000001", nid="n2"), orders)
        assert types(orders) == ["order.created", "order.paid"]
        assert store(orders).records[2000001].pending is None
        for event in published(orders):
            ORDERS_EVENT.validate_python(event)


async def test_two_records_of_one_order_handled_at_once_publish_each_event_once(
    market: Market, orders: Orders
) -> None:
    market.add(ml_order())
    market.pay(2000001)
    await asyncio.gather(
        on_notification(note("/orders/2000001"), orders),
        on_notification(note("/collections/5000001", "payments", nid="n2"), orders),
    )
    assert types(orders) == ["order.created", "order.paid"]


async def test_an_order_seen_shipped_only_once_delivered_is_dated_shipped_by_its_history(
    market: Market, orders: Orders
) -> None:
    market.add(ml_order())
    market.pay(2000001)
    await on_notification(note("/orders/2000001"), orders)
    shipped_at = T0 + timedelta(hours=5)
    market.ship(2000001, at=shipped_at)
    market.ship(2000001, "delivered", at=T0 + timedelta(days=2))
    await on_notification(note("/shipments/4000001", "shipments", nid="n2"), orders)
    summary = store(orders).order(2000001).summary
    assert (summary.shipped_at, summary.delivered_at) == (shipped_at, T0 + timedelta(days=2))
