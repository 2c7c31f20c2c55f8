"""Sales analytics: each transition counts once, snapshots and replays included."""

from __future__ import annotations

from datetime import date, timedelta
from zoneinfo import ZoneInfo

from peepers_common.events import ORDERS_EVENT
from peepers_common.testing import InMemoryEventPublisher
from peepers_orders.analytics import on_order_event, percentile
from peepers_orders.handlers import Orders, on_notification
from tests.unit.orders.conftest import EVENTS
from tests.unit.orders.fakes import SELLER, T0, InMemoryAnalytics, Market, ml_order
from tests.unit.orders.test_handlers import note

ZONE = ZoneInfo("America/Sao_Paulo")


def records(orders: Orders) -> list[bytes]:
    assert isinstance(orders.publisher, InMemoryEventPublisher)
    return [r.value for r in orders.publisher.on(EVENTS)]


async def _lifecycle(market: Market, orders: Orders) -> None:
    market.add(ml_order())
    await on_notification(note("/orders/2000001"), orders)
    market.pay(2000001)
    market.ship(2000001, at=T0 + timedelta(hours=5))
    await on_notification(note("/orders/2000001", nid="n2"), orders)
    market.ship(2000001, "delivered", at=T0 + timedelta(days=2))
    await on_notification(note("/orders/2000001", nid="n3"), orders)


def totals(store: InMemoryAnalytics) -> dict[str, int]:
    found: dict[str, int] = {}
    for counted in store.counted.values():
        for name, value in counted.counters.items():
            found[name] = found.get(name, 0) + value
    return found


async def test_each_transition_counts_once_on_its_own_day(market: Market, orders: Orders) -> None:
    await _lifecycle(market, orders)
    store = InMemoryAnalytics()
    for raw in records(orders) * 2:  # a redelivery of everything
        await on_order_event(raw, store, ZONE)
    assert totals(store) == {"orders": 1, "units": 2, "revenue:BRL": 12050}
    days = {c.counters.get("orders", 0) and c.day for c in store.counted.values()}
    assert date(2026, 11, 2) in days
    durations = {c.duration[0]: c.duration[2] for c in store.counted.values() if c.duration}
    assert durations == {
        "paid_to_shipped": timedelta(hours=4, minutes=55).total_seconds(),
        "shipped_to_delivered": timedelta(days=2, hours=-5).total_seconds(),
    }


async def test_a_snapshot_and_the_transitions_of_one_order_count_it_once(
    market: Market, orders: Orders
) -> None:
    await _lifecycle(market, orders)
    store = InMemoryAnalytics()
    snapshot = ORDERS_EVENT.validate_json(records(orders)[-1]).model_dump(mode="json")
    snapshot.update(type="order.snapshot", event_id="6f5c1c2e-5b7e-4f0a-9a56-2f1d8a3c9e19")
    await on_order_event(
        ORDERS_EVENT.validate_python(snapshot).model_dump_json().encode(), store, ZONE
    )
    for raw in records(orders):
        await on_order_event(raw, store, ZONE)
    assert totals(store) == {"orders": 1, "units": 2, "revenue:BRL": 12050}
    assert all(c.seller_id == SELLER for c in store.counted.values())


async def test_cancellations_and_refunds_are_counted(market: Market, orders: Orders) -> None:
    market.add(ml_order())
    market.pay(2000001)
    await on_notification(note("/orders/2000001"), orders)
    market.cancel(2000001)
    await on_notification(note("/orders/2000001", nid="n2"), orders)
    store = InMemoryAnalytics()
    for raw in records(orders):
        await on_order_event(raw, store, ZONE)
    assert totals(store) == {
        "orders": 1,
        "units": 2,
        "revenue:BRL": 12050,
        "refunds": 1,
        "cancellations": 1,
    }


def test_percentiles_use_the_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([5.0, 1.0, 3.0], 0.5) == 3.0
    assert percentile([float(n) for n in range(1, 11)], 0.9) == 9.0
