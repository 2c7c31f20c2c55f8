"""Orders use cases: plain async functions over the ports in `Orders`.

One notification (``orders_v2``, ``shipments`` or ``payments``) names one order, one
shipment (of one or more orders: a pack's share it) or one payment (of one order). Each
leads to the same step for every order it concerns, `apply_order`: fetch the order (and
its shipment when only the shipment can tell the next milestone, and its pack the first
time), map it with `lifecycle.milestones`, and record what is new.

Order of effects, as the catalog's (a transactional outbox): the cache write is a
compare-and-set on the record's version, and stores the write's events in the same
atomic step; only the writer that wins publishes them, then clears them. A crash after
the write leaves them pending, and the next handling of the order publishes them first,
with the same deterministic ids (one per order and milestone).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Final

from pydantic import TypeAdapter

from peepers_common.errors import CacheUnavailable, MlNotFound
from peepers_common.events import (
    OrderCancelled,
    OrderCreated,
    OrderDelivered,
    OrderEvent,
    OrderLine,
    OrderNotDelivered,
    OrderPaid,
    OrderRefunded,
    OrdersEvent,
    OrderShipped,
    OrderSnapshotted,
    OrderSummary,
    event_headers,
    occurred,
    order_event_id,
    order_event_key,
)
from peepers_common.kafka import EventPublisher
from peepers_common.ml.models import MlOrder, MlShipment
from peepers_common.notifications import Notification
from peepers_orders import lifecycle, metrics
from peepers_orders.errors import InvalidOrderNotification, ShipmentNotLinked
from peepers_orders.lifecycle import State
from peepers_orders.ports import (
    CachedOrder,
    OrderSource,
    OrderStore,
    PackLink,
    SellerDirectory,
    TimelineEntry,
)

log = logging.getLogger(__name__)

# Resources are data, not URLs: an id from a strict pattern per topic, nothing else.
_RESOURCES: Final = {
    "orders_v2": re.compile(r"^/orders/([1-9][0-9]{0,19})$"),
    "shipments": re.compile(r"^/shipments/([1-9][0-9]{0,19})$"),
    "payments": re.compile(r"^/collections/([1-9][0-9]{0,19})$"),
}
_CAS_ATTEMPTS: Final = 5
_PAST_SHIPPED: Final = frozenset({"delivered", "not_delivered"})
_PENDING: Final = TypeAdapter(list[OrdersEvent])
_EVENT_OF_STATE: Final[dict[State, type[OrderEvent]]] = {
    State.CREATED: OrderCreated,
    State.PAID: OrderPaid,
    State.SHIPPED: OrderShipped,
    State.DELIVERED: OrderDelivered,
    State.NOT_DELIVERED: OrderNotDelivered,
    State.CANCELLED: OrderCancelled,
    State.REFUNDED: OrderRefunded,
    State.PARTIALLY_REFUNDED: OrderRefunded,
}


class Outcome(StrEnum):
    CREATED = "created"  # a new order, announced from order.created on
    SNAPSHOT = "snapshot"  # a new order Peepers cannot prove it announced: order.snapshot
    ADVANCED = "advanced"  # new milestones recorded, one event each
    UPDATED = "updated"  # fields changed (amounts, shipment status), no new milestone
    UNCHANGED = "unchanged"  # what the cache holds already: a duplicate or reordered fetch
    # A shipment of no cached order while the cache is rebuilt: the rebuild's backfill
    # reads the order, and its shipment, as they are by then.
    LEFT_TO_REBUILD = "left_to_rebuild"


class OrderLocks:
    """One order handled at a time in this worker.

    A batch handles records of different keys concurrently, and an ``orders_v2``, a
    ``payments`` and a ``shipments`` record of one order have different keys. Without the
    lock they race on the compare-and-set: the loser recomputes correctly, but first
    republishes the winner's pending events (the same ids, needless duplicates). Replicas
    can still race (their partitions differ); the outbox keeps that correct.
    """

    def __init__(self) -> None:
        self._locks: dict[int, asyncio.Lock] = {}
        self._users: dict[int, int] = {}

    @asynccontextmanager
    async def hold(self, order_id: int) -> AsyncIterator[None]:
        lock = self._locks.setdefault(order_id, asyncio.Lock())
        self._users[order_id] = self._users.get(order_id, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[order_id] -= 1
            if not self._users[order_id]:
                del self._users[order_id], self._locks[order_id]


@dataclass(frozen=True)
class Orders:
    """Everything the handlers need, built by the composition root (or a test)."""

    ml: OrderSource
    store: OrderStore
    sellers: SellerDirectory
    publisher: EventPublisher
    events_topic: str
    clock: Callable[[], float] = time.time
    locks: OrderLocks = field(default_factory=OrderLocks)
    # Whether the cache is being rebuilt (`peepers_common.rebuild.CacheGuard.rebuilding`).
    rebuilding: Callable[[], bool] = lambda: False

    def reading_with(self, ml: OrderSource) -> Orders:
        return dataclasses.replace(self, ml=ml)


def resource_id(notification: Notification) -> int:
    """The order, shipment or payment id in a notification's resource, by a strict pattern."""
    pattern = _RESOURCES.get(notification.topic)
    match = pattern.match(notification.resource_path) if pattern is not None else None
    if match is None:
        msg = (
            f"resource {notification.resource_path!r} on topic {notification.topic!r} "
            "names no order, shipment or payment"
        )
        raise InvalidOrderNotification(msg)
    return int(match.group(1))


async def on_notification(notification: Notification, orders: Orders) -> Outcome:
    """An ``orders_v2``, ``shipments`` or ``payments`` notification."""
    found = resource_id(notification)
    seller_id = notification.user_id
    revealed_by = f"notification:{notification.notification_id}"
    if notification.topic == "orders_v2":
        return await on_order(found, seller_id, revealed_by, orders)
    if notification.topic == "payments":
        payment = await orders.ml.get_payment(found, seller_id=seller_id)
        if payment.order_id is None:
            msg = f"payment {found} names no order"
            raise InvalidOrderNotification(msg)
        return await on_order(payment.order_id, seller_id, revealed_by, orders)
    order_ids = await orders.store.orders_of_shipment(found)
    if not order_ids and orders.rebuilding():
        # Not lost: parked until the rebuild ends, it would be dead-lettered meanwhile.
        return _counted(Outcome.LEFT_TO_REBUILD)
    if not order_ids:
        msg = f"shipment {found} belongs to no cached order yet"
        raise ShipmentNotLinked(msg)
    outcomes = [await on_order(order_id, seller_id, revealed_by, orders) for order_id in order_ids]
    return min(outcomes, key=list(Outcome).index)  # the most telling (the enum is in that order)


async def on_order(order_id: int, seller_id: int, revealed_by: str, orders: Orders) -> Outcome:
    """Fetch one order (and what its transition needs) and apply it."""
    async with orders.locks.hold(order_id):
        order = await orders.ml.get_order(order_id, seller_id=seller_id)
        if order.seller.id != seller_id:
            msg = f"order {order_id} belongs to seller {order.seller.id}, not {seller_id}"
            raise InvalidOrderNotification(msg)
        return await _apply(order, revealed_by, orders)


async def apply_order(order: MlOrder, revealed_by: str, orders: Orders) -> Outcome:
    """Bring the cache, its indexes and the event stream up to ``order``, at most once each."""
    async with orders.locks.hold(order.id):
        return await _apply(order, revealed_by, orders)


async def _apply(order: MlOrder, revealed_by: str, orders: Orders) -> Outcome:
    shipment = (
        await orders.ml.get_shipment(order.shipment_id, seller_id=order.seller.id)
        if order.shipment_id is not None and lifecycle.needs_shipment(order)
        else None
    )
    lifecycle.count_unknown(order, shipment)
    now = occurred(orders.clock())
    reached = lifecycle.milestones(order, shipment, now=now)
    dated = False
    for _ in range(_CAS_ATTEMPTS):
        stored = await orders.store.load(order.id)
        if stored.pending is not None:
            await flush_pending(order.id, stored.pending, orders)
        cached = stored.order
        if cached is None:
            await _link_pack(order, orders)
            snapshot = not await _announceable(order, orders)
        else:
            snapshot = False
        recorded = [State(entry.state) for entry in cached.timeline] if cached else []
        if shipment is not None and not dated and _shipped_unseen(shipment, recorded):
            reached = await _with_shipped_at(reached, shipment, order.seller.id, orders)
            dated = True
        new = lifecycle.new_milestones(recorded, reached)
        timeline = (
            *(cached.timeline if cached else ()),
            *(TimelineEntry(state=s.value, at=at, revealed_by=revealed_by) for s, at in new),
        )
        summary = _summary(order, shipment, cached, timeline)
        fresh = CachedOrder(
            seller_id=order.seller.id,
            summary=summary,
            timeline=timeline,
            ml_last_updated=order.last_updated or now,
        )
        if cached is not None and not new and cached.summary == summary:
            return _counted(Outcome.UNCHANGED)
        events = _events(fresh, new, snapshot=snapshot, revealed_by=revealed_by, now=now)
        pending = _encode(events)
        if await orders.store.put(fresh, expected_version=stored.version, pending=pending):
            for state, _at in new:
                metrics.TRANSITIONS.labels(state.value).inc()
            if pending is not None:
                await flush_pending(order.id, pending, orders)
            if cached is None:
                return _counted(Outcome.SNAPSHOT if snapshot else Outcome.CREATED)
            return _counted(Outcome.ADVANCED if new else Outcome.UPDATED)
        metrics.CAS_CONFLICTS.inc()
    msg = f"order {order.id}: the cache kept changing under {_CAS_ATTEMPTS} writes"
    raise CacheUnavailable(msg)


def _shipped_unseen(shipment: MlShipment, recorded: Sequence[State]) -> bool:
    """Whether the shipment went past ``shipped`` while nobody recorded it shipping."""
    return shipment.status in _PAST_SHIPPED and State.SHIPPED not in recorded


async def _with_shipped_at(
    reached: dict[State, datetime], shipment: MlShipment, seller_id: int, orders: Orders
) -> dict[State, datetime]:
    """``reached`` with the time the shipment really shipped, from its history.

    The shipment alone dates ``shipped`` by its last change (the delivery); the history
    has the day it left, which the paid-to-shipped analytics need.
    """
    try:
        history = await orders.ml.get_shipment_history(shipment.id, seller_id=seller_id)
    except MlNotFound:
        return reached  # no history kept: the last change's time stands
    shipped = next((step.date for step in history if step.status == "shipped"), None)
    return reached if shipped is None else {**reached, State.SHIPPED: shipped}


async def _announceable(order: MlOrder, orders: Orders) -> bool:
    """Whether a first-seen order is news, to announce from ``order.created`` on.

    It is when created after the seller connected and after this cache began (an older
    one may have been announced before the cache was lost). Backfilled history and orders
    found again after a loss are announced as snapshots.
    """
    if order.date_created < await orders.sellers.epoch_started_at():
        return False
    connected_at = await orders.sellers.connected_at(order.seller.id)
    return connected_at is None or order.date_created >= connected_at


async def _link_pack(order: MlOrder, orders: Orders) -> None:
    """The first time an order is seen, link its pack's orders and their shipment."""
    if order.pack_id is None or await orders.store.pack(order.pack_id) is not None:
        return
    pack = await orders.ml.get_pack(order.pack_id, seller_id=order.seller.id)
    await orders.store.link_pack(
        PackLink(
            pack_id=pack.id,
            order_ids=tuple(o.id for o in pack.orders) or (order.id,),
            shipment_id=pack.shipment_id or order.shipment_id,
        )
    )


def _first(timeline: Sequence[TimelineEntry], state: State) -> datetime | None:
    return next((entry.at for entry in timeline if entry.state == state), None)


def _summary(
    order: MlOrder,
    shipment: MlShipment | None,
    cached: CachedOrder | None,
    timeline: Sequence[TimelineEntry],
) -> OrderSummary:
    paid = lifecycle.money(order)
    shipment_status = (
        shipment.status if shipment else (cached.summary.shipment_status if cached else None)
    )
    return OrderSummary(
        order_id=order.id,
        state=lifecycle.state_of(State(entry.state) for entry in timeline).value,
        ml_status=order.status,
        buyer_id=order.buyer.id,
        currency_id=order.currency_id,
        total_amount=Decimal(str(order.total_amount)),
        paid_amount=paid.paid,
        refunded_amount=paid.refunded,
        lines=tuple(
            OrderLine(
                item_id=line.item_id,
                title=line.title,
                quantity=line.quantity,
                unit_price=Decimal(str(line.unit_price)),
            )
            for line in order.order_items
        ),
        pack_id=order.pack_id,
        shipment_id=order.shipment_id,
        shipment_status=shipment_status,
        date_created=order.date_created,
        paid_at=_first(timeline, State.PAID),
        shipped_at=_first(timeline, State.SHIPPED),
        delivered_at=_first(timeline, State.DELIVERED),
    )


def _events(
    order: CachedOrder,
    new: Sequence[tuple[State, datetime]],
    *,
    snapshot: bool,
    revealed_by: str,
    now: datetime,
) -> list[OrderEvent]:
    summary = order.summary
    common = {
        "seller_id": order.seller_id,
        "order_id": summary.order_id,
        "order": summary,
        "revealed_by": revealed_by,
    }
    if snapshot:
        return [
            OrderSnapshotted(
                event_id=order_event_id(summary.order_id, "order.snapshot", summary.state),
                occurred_at=now,
                seller_id=order.seller_id,
                order_id=summary.order_id,
                order=summary,
                revealed_by=revealed_by,
            )
        ]
    events: list[OrderEvent] = []
    for state, at in new:
        model = _EVENT_OF_STATE[state]
        event_type = model.model_fields["type"].default
        fields = {
            **common,
            "event_id": order_event_id(summary.order_id, event_type, state.value),
            "occurred_at": at,
        }
        if model is OrderRefunded:
            fields["partial"] = state is State.PARTIALLY_REFUNDED
        events.append(model.model_validate(fields))
    return events


def _encode(events: Sequence[OrderEvent]) -> bytes | None:
    if not events:
        return None
    return b"[" + b",".join(event.model_dump_json().encode() for event in events) + b"]"


async def flush_pending(order_id: int, pending: bytes, orders: Orders) -> None:
    """Publish a write's events from the outbox, then clear them (at-least-once)."""
    for event in _PENDING.validate_json(pending):
        await orders.publisher.publish(
            orders.events_topic,
            key=order_event_key(event),
            value=event.model_dump_json().encode(),
            headers=event_headers(event, source="peepers-orders"),
        )
        metrics.EVENTS.labels(event.type).inc()
    await orders.store.clear_pending(order_id, pending)


def _counted(outcome: Outcome) -> Outcome:
    metrics.APPLIED.labels(outcome.value).inc()
    return outcome
