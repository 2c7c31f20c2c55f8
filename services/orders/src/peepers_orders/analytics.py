"""Sales analytics ("Sync Analytics"): per seller and day, from ``peepers.orders.v1``.

Its own agent reads the orders topic and counts each transition once, keyed by the
transition's id (`peepers_common.events.order_event_id` of the order and milestone, the
``event_id`` of a real transition). A snapshot counts the milestones its order shows
(created, paid, shipped, delivered, cancelled, refunds) under the same ids, so an order
announced first as a snapshot and later through transitions, or replayed, counts once.

Per seller and day (the day, in ``analytics_timezone``, when the milestone happened):

* ``orders`` and ``units``: orders created, and their quantities;
* ``revenue`` by currency: money paid, counted on the day it was paid;
* ``cancellations`` and ``refunds`` (full or partial);
* the median and p90 time from paid to shipped and from shipped to delivered, over the
  orders shipped (delivered) that day.

``python -m peepers_orders analytics rebuild`` replays the topic from its start into a
new generation of keys and switches readers to it when done; the live agent writes both
generations meanwhile (see `adapters.redis_analytics`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Final, Protocol
from zoneinfo import ZoneInfo

from peepers_common.events import (
    ORDERS_EVENT,
    OrderEvent,
    OrderSnapshotted,
    OrderSummary,
    event_type_of,
    order_event_id,
)
from peepers_orders import metrics
from peepers_orders.lifecycle import State
from peepers_orders.mail import transition_of
from peepers_orders.ports import DayFigures

_COUNTED_TYPES: Final = frozenset(
    {
        "order.created",
        "order.paid",
        "order.shipped",
        "order.delivered",
        "order.cancelled",
        "order.refunded",
        "order.not_delivered",
        "order.snapshot",
    }
)
_TYPE_OF: Final = {
    State.CREATED: "order.created",
    State.PAID: "order.paid",
    State.SHIPPED: "order.shipped",
    State.DELIVERED: "order.delivered",
    State.NOT_DELIVERED: "order.not_delivered",
    State.CANCELLED: "order.cancelled",
    State.REFUNDED: "order.refunded",
    State.PARTIALLY_REFUNDED: "order.refunded",
}


@dataclass(frozen=True)
class Counted:
    """One transition as analytics counts it."""

    transition_id: str
    seller_id: int
    day: date
    counters: dict[str, int]
    # ("paid_to_shipped" | "shipped_to_delivered", order id, seconds)
    duration: tuple[str, int, float] | None = None


class AnalyticsStore(Protocol):
    async def count(self, counted: Counted) -> bool:
        """Add one transition's counters, unless its id was counted (then False)."""
        ...

    async def days(self, seller_id: int, first: date, last: date) -> list[DayFigures]: ...


def _cents(amount: Decimal) -> int:
    return int((amount * 100).to_integral_value())


def _counters(state: State, order: OrderSummary) -> dict[str, int]:
    currency = order.currency_id or "XXX"
    if state is State.CREATED:
        return {"orders": 1, "units": sum(line.quantity for line in order.lines)}
    if state is State.PAID:
        return {f"revenue:{currency}": _cents(order.paid_amount or order.total_amount)}
    if state is State.CANCELLED:
        return {"cancellations": 1}
    if state in (State.REFUNDED, State.PARTIALLY_REFUNDED):
        return {"refunds": 1}
    return {}


def _duration(state: State, order: OrderSummary) -> tuple[str, int, float] | None:
    if state is State.SHIPPED and order.paid_at and order.shipped_at:
        seconds = (order.shipped_at - order.paid_at).total_seconds()
        return ("paid_to_shipped", order.order_id, max(seconds, 0.0))
    if state is State.DELIVERED and order.shipped_at and order.delivered_at:
        seconds = (order.delivered_at - order.shipped_at).total_seconds()
        return ("shipped_to_delivered", order.order_id, max(seconds, 0.0))
    return None


def _milestones_of_snapshot(event: OrderSnapshotted) -> list[tuple[State, datetime]]:
    order = event.order
    found: list[tuple[State, datetime]] = [(State.CREATED, order.date_created)]
    for state, at in (
        (State.PAID, order.paid_at),
        (State.SHIPPED, order.shipped_at),
        (State.DELIVERED, order.delivered_at),
    ):
        if at is not None:
            found.append((state, at))
    if order.state in (State.CANCELLED, State.REFUNDED, State.PARTIALLY_REFUNDED):
        found.append((State(order.state), event.occurred_at))
    return found


def transitions(event: OrderEvent, zone: ZoneInfo) -> list[Counted]:
    """What ``event`` adds to analytics, one entry per milestone it shows."""
    if isinstance(event, OrderSnapshotted):
        reached = _milestones_of_snapshot(event)
    else:
        reached = [(State(transition_of(event)), event.occurred_at)]
    return [
        Counted(
            transition_id=str(order_event_id(event.order_id, _TYPE_OF[state], state.value)),
            seller_id=event.seller_id,
            day=at.astimezone(zone).date(),
            counters=_counters(state, event.order),
            duration=_duration(state, event.order),
        )
        for state, at in reached
    ]


async def on_order_event(raw: bytes, store: AnalyticsStore, zone: ZoneInfo) -> str:
    """One record of ``peepers.orders.v1`` into the seller's days."""
    if event_type_of(raw) not in _COUNTED_TYPES:
        return "ignored"  # types newer than this code
    counted = 0
    for entry in transitions(ORDERS_EVENT.validate_json(raw), zone):
        if await store.count(entry):
            counted += 1
            metrics.ANALYTICS.labels("counted").inc()
        else:
            metrics.ANALYTICS.labels("duplicate").inc()
    return "counted" if counted else "duplicate"


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The ``fraction`` quantile of ``values`` (nearest rank), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]
