"""The status mapping, as a table over every value FACTS.md lists, plus unknown ones."""

from datetime import timedelta

import pytest
from prometheus_client import REGISTRY

from peepers_common.ml.models import ORDER_STATUSES
from peepers_orders.lifecycle import (
    SHIPMENT_STATUSES,
    State,
    count_unknown,
    milestones,
    new_milestones,
    state_of,
)
from tests.unit.orders.fakes import T0, ml_order, payment, shipment

NOW = T0 + timedelta(days=2)
PAID_AT = T0 + timedelta(minutes=5)


def reached(order, ship=None) -> list[State]:
    return [state for state, _ in new_milestones([], milestones(order, ship, now=NOW))]


# Order status alone (no shipment): every value of FACTS.md 4.2.
ORDER_TABLE = {
    "confirmed": [State.CREATED],
    "payment_required": [State.CREATED],
    "payment_in_process": [State.CREATED],
    "partially_paid": [State.CREATED],
    "paid": [State.CREATED, State.PAID],
    "partially_refunded": [State.CREATED, State.PAID, State.PARTIALLY_REFUNDED],
    "pending_cancel": [State.CREATED],
    "cancelled": [State.CREATED, State.CANCELLED],
    "invalid": [State.CREATED, State.CANCELLED],
}

# Shipment status of a paid order: every value of FACTS.md 6.
SHIPMENT_TABLE = {
    "to_be_agreed": State.PAID,
    "pending": State.PAID,
    "handling": State.PAID,
    "ready_to_ship": State.PAID,
    "shipped": State.SHIPPED,
    "delivered": State.DELIVERED,
    "not_delivered": State.NOT_DELIVERED,
    "not_verified": State.SHIPPED,
    "cancelled": State.PAID,
    "closed": State.PAID,
    "error": State.PAID,
    "active": State.PAID,
    "not_specified": State.PAID,
    "stale_ready_to_ship": State.PAID,
    "stale_shipped": State.SHIPPED,
}


def test_the_tables_cover_every_known_value() -> None:
    assert set(ORDER_TABLE) == set(ORDER_STATUSES)
    assert set(SHIPMENT_TABLE) == SHIPMENT_STATUSES


@pytest.mark.parametrize(("status", "expected"), ORDER_TABLE.items())
def test_each_order_status_maps_to_its_milestones(status, expected) -> None:
    assert reached(ml_order(status=status)) == expected


@pytest.mark.parametrize(("status", "state"), SHIPMENT_TABLE.items())
def test_each_shipment_status_of_a_paid_order_maps_to_one_state(status, state) -> None:
    order = ml_order(status="paid", date_closed=PAID_AT, payments=[payment()])
    assert state_of(reached(order, shipment(status))) == state


def test_a_delivered_shipment_records_paid_and_shipped_before_delivered() -> None:
    order = ml_order(status="paid", date_closed=PAID_AT, payments=[payment()])
    assert reached(order, shipment("delivered")) == [
        State.CREATED,
        State.PAID,
        State.SHIPPED,
        State.DELIVERED,
    ]


def test_a_part_payment_is_not_paid() -> None:
    order = ml_order(status="partially_paid", payments=[payment(amount=50.0)])
    assert reached(order) == [State.CREATED]


def test_a_refunded_sale_that_stays_paid_is_refunded() -> None:
    order = ml_order(
        status="paid", date_closed=PAID_AT, payments=[payment(status="refunded", refunded=120.5)]
    )
    assert state_of(reached(order)) == State.REFUNDED


def test_a_part_refund_does_not_hide_the_shipment() -> None:
    order = ml_order(
        status="partially_refunded", date_closed=PAID_AT, payments=[payment(refunded=20)]
    )
    states = reached(order, shipment("shipped"))
    assert State.PARTIALLY_REFUNDED in states
    assert state_of(states) == State.SHIPPED


def test_a_cancelled_paid_order_records_its_refund_and_its_cancellation() -> None:
    order = ml_order(
        status="cancelled",
        date_closed=PAID_AT,
        payments=[payment(status="refunded", refunded=120.5)],
        cancel_detail={"date": (T0 + timedelta(hours=1)).isoformat()},
    )
    got = milestones(order, None, now=NOW)
    assert [s for s, _ in new_milestones([], got)] == [
        State.CREATED,
        State.PAID,
        State.REFUNDED,
        State.CANCELLED,
    ]
    assert got[State.CANCELLED] == T0 + timedelta(hours=1)
    assert got[State.PAID] == PAID_AT


def test_a_cancelled_unpaid_order_was_never_refunded() -> None:
    order = ml_order(status="cancelled", payments=[payment(status="refunded", refunded=50)])
    assert reached(order) == [State.CREATED, State.CANCELLED]


def _unknown(field: str, value: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "peepers_orders_unknown_values_total", {"field": field, "value": value}
        )
        or 0.0
    )


@pytest.mark.parametrize(
    ("order_status", "payment_status", "ship_status"),
    [
        ("teleported", "approved", "pending"),
        ("paid", "vanished", "pending"),
        ("paid", "approved", "in_orbit"),
    ],
)
def test_an_unknown_value_is_kept_counted_and_moves_nothing(
    order_status, payment_status, ship_status
) -> None:
    order = ml_order(status=order_status, payments=[payment(status=payment_status)])
    ship = shipment(ship_status)
    fields = {
        "order.status": order_status,
        "payment.status": payment_status,
        "shipment.status": ship_status,
    }
    before = {field: _unknown(field, value) for field, value in fields.items()}
    count_unknown(order, ship)
    grew = [f for f, v in fields.items() if _unknown(f, v) > before[f]]
    assert len(grew) == 1
    expected = [State.CREATED, State.PAID] if order_status == "paid" else [State.CREATED]
    assert reached(order, ship) == expected


class TestOrderOfMilestones:
    def test_only_what_is_not_recorded_is_new_in_lifecycle_order(self) -> None:
        got = {State.SHIPPED: NOW, State.CREATED: T0, State.PAID: PAID_AT}
        assert new_milestones([State.CREATED], got) == [(State.PAID, PAID_AT), (State.SHIPPED, NOW)]

    def test_a_lagging_fetch_records_nothing_and_the_state_never_goes_back(self) -> None:
        recorded = [State.CREATED, State.PAID, State.SHIPPED]
        assert new_milestones(recorded, {State.CREATED: T0, State.PAID: PAID_AT}) == []
        assert state_of(recorded) == State.SHIPPED
