"""The small ports the orders handlers talk through; adapters live in ``adapters/``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict

from peepers_common.events import OrderSummary
from peepers_common.ml.models import (
    MlOrder,
    MlOrderPage,
    MlPack,
    MlPayment,
    MlShipment,
    MlShipmentStep,
    MlUser,
)


class OrderSource(Protocol):
    """The part of `peepers_common.ml.MlApi` the orders service reads ML through."""

    async def get_order(self, order_id: int, *, seller_id: int) -> MlOrder: ...

    async def get_shipment(self, shipment_id: int, *, seller_id: int) -> MlShipment: ...

    async def get_shipment_history(
        self, shipment_id: int, *, seller_id: int
    ) -> list[MlShipmentStep]: ...

    async def get_pack(self, pack_id: int, *, seller_id: int) -> MlPack: ...

    async def get_payment(self, payment_id: int, *, seller_id: int) -> MlPayment: ...

    async def get_me(self, *, seller_id: int) -> MlUser: ...

    async def search_orders(
        self,
        *,
        seller_id: int,
        offset: int = 0,
        limit: int = 50,
        sort: str = "date_desc",
        created_from: datetime | None = None,
        statuses: Sequence[str] = (),
    ) -> MlOrderPage: ...


class TimelineEntry(BaseModel):
    """One transition: the state reached, when, and what revealed it."""

    model_config = ConfigDict(frozen=True)

    state: str
    at: AwareDatetime
    revealed_by: str


class CachedOrder(BaseModel):
    """What the cache holds for an order: the summary events carry, and its timeline."""

    model_config = ConfigDict(frozen=True)

    seller_id: int
    summary: OrderSummary
    timeline: tuple[TimelineEntry, ...] = ()
    # ML's stamp of the version applied (``last_updated``): reads show how fresh it is.
    ml_last_updated: AwareDatetime | None = None


@dataclass(frozen=True)
class StoredOrder:
    """An order's cache record in one read: the order, its CAS version, unsent events."""

    order: CachedOrder | None
    version: int = 0
    # The encoded domain events of the last write, until they are published (the outbox).
    pending: bytes | None = None


@dataclass(frozen=True)
class OrderQuery:
    """A seller's orders, newest first, filtered; ``cursor`` continues a previous page."""

    seller_id: int
    state: str | None = None
    buyer_id: int | None = None
    item_id: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    limit: int = 50
    cursor: str | None = None


@dataclass(frozen=True)
class OrderPage:
    orders: list[CachedOrder]
    next_cursor: str | None = None


@dataclass(frozen=True)
class PackLink:
    """A pack's orders (each with its own state) and their shared shipment."""

    pack_id: int
    order_ids: tuple[int, ...]
    shipment_id: int | None = None


class OrderStore(Protocol):
    """The order cache, its indexes and the outbox, written together so they never disagree."""

    async def load(self, order_id: int) -> StoredOrder: ...

    async def put(
        self, order: CachedOrder, *, expected_version: int, pending: bytes | None
    ) -> bool:
        """Write ``order`` and its index entries atomically, compare-and-set on the version.

        The write happens only while the stored version still equals
        ``expected_version`` (0: nothing stored). Returns False, changing nothing, when
        another writer got there first; the caller re-reads. ``pending`` (the write's
        encoded events) is stored with it until `clear_pending`.
        """
        ...

    async def clear_pending(self, order_id: int, pending: bytes) -> None:
        """Forget the pending events once published, if they are still these ones."""
        ...

    async def orders_of_shipment(self, shipment_id: int) -> list[int]: ...

    async def link_pack(self, pack: PackLink) -> None: ...

    async def pack(self, pack_id: int) -> PackLink | None: ...

    async def search(self, query: OrderQuery) -> OrderPage: ...

    async def get_many(self, order_ids: Sequence[int]) -> list[CachedOrder]: ...

    async def sample_order_ids(self, seller_id: int, count: int) -> list[int]:
        """Up to ``count`` distinct cached orders of the seller, at random."""
        ...

    async def count_by_state(self, seller_id: int) -> dict[str, int]: ...


class SellerDirectory(Protocol):
    """What the orders service knows of sellers: when they connected, and their mail."""

    async def connected(self, seller_id: int, at: datetime) -> None:
        """Note the seller's first connection (later ones keep the first time)."""
        ...

    async def connected_at(self, seller_id: int) -> datetime | None: ...

    async def epoch_started_at(self) -> datetime:
        """When this cache began (it is new after a loss): orders older may be announced."""
        ...

    async def profile(self, seller_id: int) -> SellerProfile | None: ...

    async def save_profile(self, profile: SellerProfile) -> None: ...


@dataclass(frozen=True)
class SellerProfile:
    seller_id: int
    nickname: str
    email: str | None


@dataclass(frozen=True)
class BackfillState:
    """A seller's backfill: resumable from ``offset`` of a search fixed at ``created_from``."""

    seller_id: int
    run_id: str
    created_from: datetime
    phase: str = "running"  # running | done
    offset: int = 0
    total: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    # When it was done (a later request for the seller's history is covered by it).
    finished_at: datetime | None = None
    # Read newest first (backfill.py); False in a checkpoint of the oldest-first code.
    newest_first: bool = False


class BackfillCheckpoints(Protocol):
    async def load(self, seller_id: int) -> BackfillState | None: ...

    async def save(self, state: BackfillState) -> None: ...

    async def claim(self, seller_id: int, owner: str, ttl_s: float) -> bool:
        """Hold the seller's backfill for ``owner`` for ``ttl_s``; False if another holds it.

        Claiming it again renews it.
        """
        ...

    async def release(self, seller_id: int, owner: str) -> None:
        """Let the seller's backfill go, if ``owner`` holds it."""
        ...


@dataclass(frozen=True)
class DayFigures:
    """One seller's sales of one day (in the analytics time zone)."""

    day: date
    orders: int = 0
    units: int = 0
    revenue: dict[str, Decimal] = field(default_factory=dict)
    cancellations: int = 0
    refunds: int = 0
    paid_to_shipped_s: tuple[float, ...] = ()
    shipped_to_delivered_s: tuple[float, ...] = ()


class MailLedger(Protocol):
    """The ledger of emails sent: Peepers-owned, so its system of record is a changelog."""

    async def sent(self, key: str) -> bool:
        """Whether the mail of ``key`` (``<order_id>:<transition>``) went out."""
        ...

    async def record(self, key: str, message_id: str) -> None:
        """Note it went out: durable (changelog, acks=all) before this returns."""
        ...


class MailClaims(Protocol):
    """Which mailer process is sending a mail now (a mail has one sender at a time)."""

    async def take(self, key: str) -> bool:
        """Hold ``key``'s mail for this process for a while; False when another holds it.

        Taking it again renews it: a retry in the same process is not locked out.
        """
        ...


class MailSender(Protocol):
    async def send(self, message: OutgoingMail) -> None:
        """Hand the message to the SMTP server; return once it answered 250."""
        ...


@dataclass(frozen=True)
class OutgoingMail:
    message_id: str
    to: str
    subject: str
    text: str
    html: str
