"""The drift audit: a cached order ML moved without a notification is repaired."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client import REGISTRY

from peepers_common.audit import Roster
from peepers_common.settings import MlApiSettings, MlLimit
from peepers_orders.app import audit_pace
from peepers_orders.audit import OrdersAudit
from peepers_orders.handlers import Orders, on_order
from peepers_orders.settings import Settings
from tests.unit.orders.fakes import SELLER, T0, Market, ml_order
from tests.unit.orders.test_handlers import store, types


async def roster() -> list[int]:
    return [SELLER]


def drift(field: str) -> float:
    return REGISTRY.get_sample_value("peepers_orders_drift_total", {"field": field}) or 0.0


async def test_an_order_ml_moved_without_a_notification_is_repaired_and_counted(
    market: Market, orders: Orders
) -> None:
    order = market.add(ml_order(2000001, date_created=T0 + timedelta(days=2)))
    await on_order(order.id, SELLER, "notification:n1", orders)
    market.pay(order.id)  # ML moves on; its notification never comes
    before = drift("state")
    audit = OrdersAudit(orders, Roster(roster), grace_s=30)
    assert await audit.step() >= 1
    assert store(orders).order(order.id).summary.state == "paid"
    assert types(orders) == ["order.created", "order.paid"]  # the repair is announced
    assert drift("state") == before + 1
    assert await audit.step() >= 1  # nothing differs now: nothing counted, nothing sent
    assert drift("state") == before + 1
    assert types(orders) == ["order.created", "order.paid"]


async def test_an_order_ml_changed_just_now_is_left_to_its_notification(
    market: Market, orders: Orders
) -> None:
    order = market.add(ml_order(2000001, date_created=T0 + timedelta(days=2)))
    await on_order(order.id, SELLER, "notification:n1", orders)
    market.pay(order.id)
    grace_s = (T0 + timedelta(days=3) - T0).total_seconds()  # the clock is T0 + 3 days
    await OrdersAudit(orders, Roster(roster), grace_s=grace_s).step()
    assert store(orders).order(order.id).summary.state == "created"


def test_the_audits_pace_is_its_share_of_the_limit_but_never_above_its_cap() -> None:
    small = Settings(ml=MlApiSettings(app_limit=MlLimit(amount=6000, per_s=60)))
    assert audit_pace(small) == pytest.approx(2.0)  # 2% of 100 a second
    # A bench's (or a huge) limit: 2% of a million a second would swamp the webhooks.
    huge = Settings(ml=MlApiSettings(app_limit=MlLimit(amount=1_000_000, per_s=1)))
    assert audit_pace(huge) == 5.0
