"""One status mapping for every path (webhook, backfill, rebuild): ML's words to a lifecycle.

ML describes an order with three open enums: the order's ``status``, its payments'
``status`` and amounts, and its shipment's ``status`` (FACTS.md 4.2, 4.1, 6). Peepers
reads them as **milestones** the order has reached:

=================== ==========================================================================
milestone           reached when ML shows
=================== ==========================================================================
created             the order exists (every status)
paid                status ``paid`` / ``partially_refunded``, or a ``date_closed`` (the
                    confirmation; a part payment has none), or shipped: nothing ships unpaid
partially_refunded  once paid: some of the money refunded (``transaction_amount_refunded``),
                    or status ``partially_refunded``
shipped             shipment ``shipped`` / ``stale_shipped`` / ``not_verified``, or
                    delivered / not_delivered
not_delivered       shipment ``not_delivered``
delivered           shipment ``delivered``
refunded            once paid: all of the money refunded (a refunded sale may stay ``paid``:
                    FACTS.md 11; the sandbox cancels it, as ML's docs say)
cancelled           status ``cancelled`` or ``invalid`` (11: cancelled or invalid first)
=================== ==========================================================================

Milestones are only ever added: a fetch that shows fewer (a duplicate or reordered
notification answered by a lagging replica) changes nothing, so nothing goes backwards.
New milestones are recorded in the order of the table, which is lifecycle order, so an
order seen first ``created`` and next ``shipped`` records ``paid`` then ``shipped``. The
order's **state** is its latest milestone in that order, except that a partial refund
does not hide a shipment's progress (``partially_refunded`` ranks below ``shipped``).

An ML value this code does not know is kept raw on the order (``ml_status``,
``shipment_status``) and counted in ``peepers_orders_unknown_values_total``; it never
raises and never moves the lifecycle.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Final

from peepers_common.ml.models import ORDER_STATUSES, MlOrder, MlShipment
from peepers_orders import metrics


class State(StrEnum):
    CREATED = "created"
    PAID = "paid"
    PARTIALLY_REFUNDED = "partially_refunded"
    SHIPPED = "shipped"
    NOT_DELIVERED = "not_delivered"
    DELIVERED = "delivered"
    REFUNDED = "refunded"
    CANCELLED = "cancelled"


# Lifecycle order: the order milestones are recorded in, and the state's precedence.
LIFECYCLE: Final = tuple(State)
_RANK: Final = {state: rank for rank, state in enumerate(LIFECYCLE)}

# FACTS.md 4.2 (order: peepers_common.ml.models.ORDER_STATUSES), 4.1 (payment) and 6
# (shipment): every value known today.
PAYMENT_STATUSES: Final = frozenset(
    {
        "pending",
        "approved",
        "authorized",
        "in_process",
        "in_mediation",
        "rejected",
        "cancelled",
        "refunded",
        "partially_refunded",
        "charged_back",
    }
)
SHIPMENT_STATUSES: Final = frozenset(
    {
        "to_be_agreed",
        "pending",
        "handling",
        "ready_to_ship",
        "shipped",
        "delivered",
        "not_delivered",
        "not_verified",
        "cancelled",
        "closed",
        "error",
        "active",
        "not_specified",
        "stale_ready_to_ship",
        "stale_shipped",
    }
)

_PAID_ORDER: Final = frozenset({"paid", "partially_refunded"})
_CANCELLED_ORDER: Final = frozenset({"cancelled", "invalid"})
# Payments whose money reached the seller at some point (refunds are counted apart).
_MONEY_IN_PAYMENT: Final = frozenset(
    {"approved", "authorized", "refunded", "partially_refunded", "charged_back", "in_mediation"}
)
# ``not_verified`` ends a shipment that left (the sandbox reaches it only from ``shipped``):
# the order was shipped, whichever path (webhook or backfill) first sees it.
_SHIPPED: Final = frozenset(
    {"shipped", "stale_shipped", "delivered", "not_delivered", "not_verified"}
)
_IMPLIES: Final[Mapping[State, tuple[State, ...]]] = {
    State.SHIPPED: (State.PAID,),
    State.NOT_DELIVERED: (State.SHIPPED, State.PAID),
    State.DELIVERED: (State.SHIPPED, State.PAID),
}


@dataclass(frozen=True)
class Money:
    """What the order's payments say: money in, and money given back."""

    paid: Decimal
    refunded: Decimal


def _decimal(value: float | None) -> Decimal:
    return Decimal(str(value or 0))


def money(order: MlOrder) -> Money:
    paid = sum(
        (_decimal(p.transaction_amount) for p in order.payments if p.status in _MONEY_IN_PAYMENT),
        Decimal(0),
    )
    refunded = sum((_decimal(p.transaction_amount_refunded) for p in order.payments), Decimal(0))
    return Money(paid=paid, refunded=refunded)


def count_unknown(order: MlOrder, shipment: MlShipment | None) -> None:
    """Count every ML value outside the known enums (kept raw, never raised)."""
    if order.status not in ORDER_STATUSES:
        metrics.UNKNOWN_VALUES.labels("order.status", order.status).inc()
    for payment in order.payments:
        if payment.status not in PAYMENT_STATUSES:
            metrics.UNKNOWN_VALUES.labels("payment.status", payment.status).inc()
    if shipment is not None and shipment.status not in SHIPMENT_STATUSES:
        metrics.UNKNOWN_VALUES.labels("shipment.status", shipment.status).inc()


def _approved_at(order: MlOrder) -> datetime | None:
    return min((p.date_approved for p in order.payments if p.date_approved), default=None)


def _refunded_at(order: MlOrder) -> datetime | None:
    return max(
        (
            p.date_last_modified
            for p in order.payments
            if p.transaction_amount_refunded and p.date_last_modified
        ),
        default=None,
    )


def milestones(
    order: MlOrder, shipment: MlShipment | None, *, now: datetime
) -> dict[State, datetime]:
    """Every milestone ML's data shows the order has reached, each with its best-known time.

    Times come from ML where it has them (``date_created``, ``date_closed``, payment
    approval and refund times, the cancellation's date, the shipment's ``last_updated``
    for its current status); otherwise ``now``, the time the fetch revealed it.
    """
    reached: dict[State, datetime] = {State.CREATED: order.date_created}
    # date_closed is the confirmation: the first time the order was paid in full. A part
    # payment (partially_paid) has approved payments but no date_closed: not paid yet.
    if order.status in _PAID_ORDER or order.date_closed is not None:
        reached[State.PAID] = order.date_closed or _approved_at(order) or now
    shipment_at = (shipment.last_updated if shipment else None) or now
    shipment_status = shipment.status if shipment else None
    if shipment_status in _SHIPPED:
        reached[State.SHIPPED] = shipment_at
    if shipment_status == "delivered":
        reached[State.DELIVERED] = shipment_at
    if shipment_status == "not_delivered":
        reached[State.NOT_DELIVERED] = shipment_at
    paid = money(order)
    # Money given back before the order was ever paid in full is a cancellation's, not a
    # refund of a sale.
    if State.PAID in reached and (paid.refunded > 0 or order.status == "partially_refunded"):
        refund_at = _refunded_at(order) or order.last_updated or now
        if paid.refunded > 0 and paid.refunded >= paid.paid:
            reached[State.REFUNDED] = refund_at
        else:
            reached[State.PARTIALLY_REFUNDED] = refund_at
    if order.status in _CANCELLED_ORDER:
        cancelled_at = (order.cancel_detail or {}).get("date")
        reached[State.CANCELLED] = (
            datetime.fromisoformat(cancelled_at)
            if isinstance(cancelled_at, str)
            else (order.last_updated or now)
        )
    for state, implied in _IMPLIES.items():
        if state in reached:
            for earlier in implied:
                reached.setdefault(earlier, reached[state])
    return reached


def new_milestones(
    recorded: Iterable[State], reached: Mapping[State, datetime]
) -> list[tuple[State, datetime]]:
    """The milestones in ``reached`` not recorded yet, in lifecycle order."""
    known = set(recorded)
    return [
        (state, reached[state]) for state in LIFECYCLE if state in reached and state not in known
    ]


def state_of(recorded: Iterable[State]) -> State:
    """The order's state: its latest milestone in lifecycle order."""
    return max(recorded, key=_RANK.__getitem__, default=State.CREATED)


def needs_shipment(order: MlOrder) -> bool:
    """Whether the shipment can tell anything: only a paid, not cancelled order ships."""
    return (
        order.shipment_id is not None
        and order.status not in _CANCELLED_ORDER
        and (order.status in _PAID_ORDER or order.date_closed is not None)
    )
