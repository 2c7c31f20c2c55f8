"""In-memory stand-ins for the orders service's ports (they behave like the real adapters)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from peepers_common.ml.models import (
    MlOrder,
    MlPack,
    MlPayment,
    MlShipment,
    MlShipmentStep,
    MlUser,
)
from peepers_common.testing import FakeMlApi
from peepers_orders.analytics import Counted
from peepers_orders.errors import MailUnavailable
from peepers_orders.ports import (
    BackfillState,
    CachedOrder,
    DayFigures,
    OrderPage,
    OrderQuery,
    OutgoingMail,
    PackLink,
    SellerProfile,
    StoredOrder,
)

SELLER = 7001
BUYER = 9001
T0 = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def ml_order(order_id: int = 2000001, *, status: str = "confirmed", **fields: Any) -> MlOrder:
    body: dict[str, Any] = {
        "id": order_id,
        "status": status,
        "date_created": T0,
        "date_closed": None,
        "last_updated": T0,
        "total_amount": 120.5,
        "paid_amount": 0,
        "currency_id": "BRL",
        "buyer": {"id": BUYER, "nickname": "COMPRADOR"},
        "seller": {"id": SELLER, "nickname": "LOJA"},
        "order_items": [
            {
                "item": {"id": "MLB100", "title": "Camiseta Básica"},
                "quantity": 2,
                "unit_price": 60.25,
                "currency_id": "BRL",
            }
        ],
        "payments": [],
        "shipping": {"id": 4000001},
        "pack_id": 3000001,
        "tags": [],
        **fields,
    }
    return MlOrder.model_validate(body)


def payment(
    order_id: int = 2000001,
    *,
    status: str = "approved",
    amount: float = 120.5,
    refunded: float = 0,
    at: datetime = T0 + timedelta(minutes=5),
    payment_id: int = 5000001,
) -> dict[str, Any]:
    return {
        "id": payment_id,
        "order_id": order_id,
        "status": status,
        "transaction_amount": amount,
        "transaction_amount_refunded": refunded,
        "currency_id": "BRL",
        "date_approved": at if status in ("approved", "refunded") else None,
        "date_last_modified": at,
    }


def shipment(status: str, *, shipment_id: int = 4000001, at: datetime | None = None) -> MlShipment:
    return MlShipment(id=shipment_id, status=status, last_updated=at or T0 + timedelta(hours=2))


class Market:
    """An ML seller's orders in a `FakeMlApi`, moved through the lifecycle as ML would."""

    def __init__(self, ml: FakeMlApi | None = None) -> None:
        self.ml = ml or FakeMlApi()
        self.ml.users[SELLER] = MlUser(id=SELLER, nickname="LOJA", email="loja@example.com")

    def add(self, order: MlOrder, ship_status: str = "pending") -> MlOrder:
        self.ml.orders[order.id] = order
        if order.shipment_id is not None:
            self.ml.shipments[order.shipment_id] = shipment(
                ship_status, shipment_id=order.shipment_id
            )
        if order.pack_id is not None:
            self.ml.packs[order.pack_id] = MlPack(
                id=order.pack_id,
                status="released",
                shipment={"id": order.shipment_id},
                orders=[{"id": order.id}],
            )
        return order

    def pay(self, order_id: int, at: datetime = T0 + timedelta(minutes=5)) -> MlOrder:
        order = self.ml.orders[order_id]
        paid = payment(order_id, amount=order.total_amount, at=at)
        self.ml.payments[paid["id"]] = MlPayment.model_validate(paid)
        return self._set(
            order, status="paid", date_closed=at, payments=[paid], paid_amount=order.total_amount
        )

    def ship(self, order_id: int, status: str = "shipped", at: datetime | None = None) -> None:
        order = self.ml.orders[order_id]
        assert order.shipment_id is not None
        moved = shipment(status, shipment_id=order.shipment_id, at=at)
        self.ml.shipments[order.shipment_id] = moved
        assert moved.last_updated is not None
        step = MlShipmentStep(status=status, date=moved.last_updated)
        self.ml.shipment_history.setdefault(order.shipment_id, []).append(step)

    def refund(self, order_id: int, amount: float) -> MlOrder:
        order = self.ml.orders[order_id]
        paid = order.payments[0].model_dump()
        paid["transaction_amount_refunded"] = amount
        paid["date_last_modified"] = T0 + timedelta(days=1)
        if amount >= paid["transaction_amount"]:
            paid["status"] = "refunded"
        status = "partially_refunded" if amount < paid["transaction_amount"] else order.status
        return self._set(order, status=status, payments=[paid])

    def cancel(self, order_id: int, at: datetime = T0 + timedelta(hours=3)) -> MlOrder:
        order = self.ml.orders[order_id]
        payments = []
        for p in order.payments:
            body = p.model_dump()
            body.update(status="refunded", transaction_amount_refunded=body["transaction_amount"])
            payments.append(body)
        return self._set(
            order,
            status="cancelled",
            payments=payments,
            cancel_detail={"group": "buyer", "date": at.isoformat()},
        )

    def _set(self, order: MlOrder, **fields: Any) -> MlOrder:
        body = {**order.model_dump(), **fields}
        body["last_updated"] = (order.last_updated or T0) + timedelta(minutes=1)
        self.ml.orders[order.id] = MlOrder.model_validate(body)
        return self.ml.orders[order.id]


class InMemoryOrderStore:
    def __init__(self) -> None:
        self.records: dict[int, StoredOrder] = {}
        self.shipments: dict[int, set[int]] = {}
        self.packs: dict[int, PackLink] = {}
        self.writes = 0

    async def load(self, order_id: int) -> StoredOrder:
        return self.records.get(order_id, StoredOrder(order=None))

    async def put(
        self, order: CachedOrder, *, expected_version: int, pending: bytes | None
    ) -> bool:
        current = self.records.get(order.summary.order_id, StoredOrder(order=None))
        if current.version != expected_version:
            return False
        self.writes += 1
        self.records[order.summary.order_id] = StoredOrder(
            order=order, version=current.version + 1, pending=pending or current.pending
        )
        if order.summary.shipment_id is not None:
            self.shipments.setdefault(order.summary.shipment_id, set()).add(order.summary.order_id)
        return True

    async def clear_pending(self, order_id: int, pending: bytes) -> None:
        current = self.records[order_id]
        if current.pending == pending:
            self.records[order_id] = replace(current, pending=None)

    async def orders_of_shipment(self, shipment_id: int) -> list[int]:
        return sorted(self.shipments.get(shipment_id, ()))

    async def link_pack(self, pack: PackLink) -> None:
        self.packs[pack.pack_id] = pack
        if pack.shipment_id is not None:
            self.shipments.setdefault(pack.shipment_id, set()).update(pack.order_ids)

    async def pack(self, pack_id: int) -> PackLink | None:
        return self.packs.get(pack_id)

    async def search(self, query: OrderQuery) -> OrderPage:
        raise NotImplementedError

    async def sample_order_ids(self, seller_id: int, count: int) -> list[int]:
        mine = [i for i, r in self.records.items() if r.order and r.order.seller_id == seller_id]
        return mine[:count]

    async def get_many(self, order_ids: Sequence[int]) -> list[CachedOrder]:
        return [r.order for i in order_ids if (r := self.records.get(i)) and r.order]

    async def count_by_state(self, seller_id: int) -> dict[str, int]:
        raise NotImplementedError

    def order(self, order_id: int) -> CachedOrder:
        found = self.records[order_id].order
        assert found is not None
        return found


class InMemorySellers:
    def __init__(self, epoch: datetime = T0 - timedelta(days=30)) -> None:
        self.connections: dict[int, datetime] = {}
        self.profiles: dict[int, SellerProfile] = {}
        self.epoch = epoch
        self.backfills: dict[int, BackfillState] = {}
        self.claims: dict[int, str] = {}

    async def connected(self, seller_id: int, at: datetime) -> None:
        self.connections.setdefault(seller_id, at)

    async def connected_at(self, seller_id: int) -> datetime | None:
        return self.connections.get(seller_id)

    async def epoch_started_at(self) -> datetime:
        return self.epoch

    async def profile(self, seller_id: int) -> SellerProfile | None:
        return self.profiles.get(seller_id)

    async def save_profile(self, profile: SellerProfile) -> None:
        self.profiles[profile.seller_id] = profile

    async def load(self, seller_id: int) -> BackfillState | None:
        return self.backfills.get(seller_id)

    async def save(self, state: BackfillState) -> None:
        self.backfills[state.seller_id] = state

    async def claim(self, seller_id: int, owner: str, ttl_s: float) -> bool:
        return self.claims.setdefault(seller_id, owner) == owner

    async def release(self, seller_id: int, owner: str) -> None:
        if self.claims.get(seller_id) == owner:
            del self.claims[seller_id]


class InMemoryLedger:
    def __init__(self) -> None:
        self.entries: dict[str, str] = {}

    async def sent(self, key: str) -> bool:
        return key in self.entries

    async def record(self, key: str, message_id: str) -> None:
        self.entries[key] = message_id


class InMemoryClaims:
    """`MailClaims` of one process (`owner`) over a store shared by several."""

    def __init__(self, store: dict[str, str] | None = None, owner: str = "mailer-1") -> None:
        self.store = {} if store is None else store
        self.owner = owner

    async def take(self, key: str) -> bool:
        return self.store.setdefault(key, self.owner) == self.owner


class FakeMailSender:
    """An SMTP server that takes everything, or is down while ``down`` is set."""

    def __init__(self) -> None:
        self.sent: list[OutgoingMail] = []
        self.down = False

    async def send(self, message: OutgoingMail) -> None:
        if self.down:
            msg = "connection refused"
            raise MailUnavailable(msg)
        self.sent.append(message)


class InMemoryAnalytics:
    def __init__(self) -> None:
        self.counted: dict[str, Counted] = {}

    async def count(self, counted: Counted) -> bool:
        if counted.transition_id in self.counted:
            return False
        self.counted[counted.transition_id] = counted
        return True

    async def days(self, seller_id: int, first: date, last: date) -> list[DayFigures]:
        raise NotImplementedError
