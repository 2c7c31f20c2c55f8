"""Domain events: the public wire contract of the ``peepers.<domain>.v1`` topics.

Other teams build on these models, so a ``v1`` model only ever gains optional fields.
Every event carries a deterministic ``event_id`` (uuid5 of what produced it), so an
event republished after a crash or a redelivery has the same id and consumers
deduplicate on it. ``docs/events.asyncapi.yaml`` is generated from these models
(``uv run peepers-asyncapi generate``, see `peepers_common.asyncapi`), and
``docs/events.v1-baseline.json`` records what v1 promised: a test fails on a breaking change.

Record keys keep the order that matters: seller events are keyed by the seller id,
catalog events by ``<seller_id>:<item_id>`` (every change of one item on one partition).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Final, Literal
from uuid import UUID, uuid5

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

from peepers_common.tracing import current_trace

# Fixed namespace for uuid5 event ids, so ids are stable across processes and releases.
_EVENT_NS = UUID("6f5c1c2e-5b7e-4f0a-9a56-2f1d8a3c9e11")


def stable_event_id(*parts: object) -> UUID:
    """The event id of whatever ``parts`` identify (source id, event type, version)."""
    return uuid5(_EVENT_NS, ":".join(str(part) for part in parts))


def occurred(now: float) -> datetime:
    return datetime.fromtimestamp(now, tz=UTC)


def event_headers(event: DomainEvent, *, source: str) -> list[tuple[str, bytes]]:
    """CloudEvents binary-mode Kafka headers of a domain event.

    Inside a trace (`peepers_common.tracing.current_trace`, bound from the notification
    that caused the event) a ``traceparent`` of a child span goes along.
    """
    headers = [
        ("ce_id", str(event.event_id).encode()),
        ("ce_type", event.type.encode()),
        ("ce_source", source.encode()),
        ("ce_specversion", b"1.0"),
        ("content-type", b"application/json"),
    ]
    trace = current_trace.get()
    if trace is not None:
        headers.append(("traceparent", trace.child().traceparent.encode()))
    return headers


class _Typed(BaseModel):
    type: str


def event_type_of(raw: bytes) -> str:
    """The ``type`` of an encoded event: consumers skip the types they do not know.

    A v1 topic gains event types over time. Raises `pydantic.ValidationError` on garbage.
    """
    return _Typed.model_validate_json(raw).type


class DomainEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    event_id: UUID
    occurred_at: AwareDatetime
    seller_id: int
    # Each concrete event narrows it to its Literal name ("item.paused", ...).
    type: str


# --- snapshots -----------------------------------------------------------------------
#
# Every domain follows one pattern for state it re-reads after losing its cache: the type
# ``<entity>.snapshot`` (`snapshot_type`), a class named ``<Entity>Snapshotted`` carrying
# the entity's whole current state, and the event id of (entity, type, version), so two
# replicas or a retried rebuild announce one snapshot once. ``item.snapshot`` is the first;
# ``order.snapshot`` and ``question.snapshot`` follow it.

SNAPSHOT_SUFFIX: Final = ".snapshot"


def snapshot_type(entity: str) -> str:
    """The snapshot event type of an entity: ``item`` -> ``item.snapshot``."""
    return entity + SNAPSHOT_SUFFIX


def is_snapshot(event_type: str) -> bool:
    return event_type.endswith(SNAPSHOT_SUFFIX)


# --- peepers.sellers.v1 -------------------------------------------------------------


class SellerConnected(DomainEvent):
    """A seller authorised Peepers for the first time (catalog starts a full sync)."""

    type: Literal["seller.connected"] = "seller.connected"
    nickname: str
    site_id: str


class SellerReconnected(DomainEvent):
    """A seller known before (disconnected or needing re-authorisation) logged in again."""

    type: Literal["seller.reconnected"] = "seller.reconnected"
    nickname: str
    site_id: str


class SellerDisconnected(DomainEvent):
    """The seller asked Peepers to forget their tokens."""

    type: Literal["seller.disconnected"] = "seller.disconnected"


class SellerReauthRequired(DomainEvent):
    """ML refused the seller's refresh token; nothing works until they log in again."""

    type: Literal["seller.reauth_required"] = "seller.reauth_required"
    reason: str


SellerEvent = Annotated[
    SellerConnected | SellerReconnected | SellerDisconnected | SellerReauthRequired,
    Field(discriminator="type"),
]
SELLER_EVENT: TypeAdapter[SellerEvent] = TypeAdapter(SellerEvent)


def seller_event_id(seller_id: int, event_type: str, version: int) -> UUID:
    """One id per transition: the seller, what happened, and the record version it made."""
    return stable_event_id(seller_id, event_type, version)


def seller_event_key(event: DomainEvent) -> bytes:
    return str(event.seller_id).encode()


# --- peepers.catalog.v1 -------------------------------------------------------------


class ItemSnapshot(BaseModel):
    """An item as Peepers mirrors it: the fields other teams read, never ML's whole body."""

    model_config = ConfigDict(frozen=True)

    id: str
    seller_id: int
    title: str
    category_id: str | None = None
    price: Decimal
    currency_id: str
    available_quantity: int
    sold_quantity: int
    status: str
    sub_status: tuple[str, ...] = ()
    sku: str | None = None
    permalink: str | None = None
    thumbnail: str | None = None
    last_updated: AwareDatetime


class FieldChange(BaseModel):
    model_config = ConfigDict(frozen=True)

    old: Any
    new: Any


class ItemEvent(DomainEvent):
    """Every catalog event names the item and the ML version (``last_updated``) it saw."""

    item_id: str
    last_updated: AwareDatetime


class ItemCreated(ItemEvent):
    """Peepers saw the item for the first time (webhook or full sync)."""

    type: Literal["item.created"] = "item.created"
    item: ItemSnapshot


class ItemSnapshotted(ItemEvent):
    """The item's current state, met while the catalog rebuilt its lost cache.

    Peepers cannot prove whether it announced the item before, so it says what the item
    is now instead of ``item.created`` (as Debezium's snapshot reads do). Treat it as an
    upsert: create the item if unknown, else replace what you hold.
    """

    type: Literal["item.snapshot"] = "item.snapshot"
    item: ItemSnapshot


class ItemUpdated(ItemEvent):
    """Fields other than price, stock and status changed (title, category, SKU, ...)."""

    type: Literal["item.updated"] = "item.updated"
    changes: dict[str, FieldChange]


class ItemPriceChanged(ItemEvent):
    type: Literal["item.price_changed"] = "item.price_changed"
    old_price: Decimal
    new_price: Decimal
    currency_id: str


class ItemStockChanged(ItemEvent):
    type: Literal["item.stock_changed"] = "item.stock_changed"
    old_quantity: int
    new_quantity: int


class ItemStatusEvent(ItemEvent):
    old_status: str
    new_status: str
    sub_status: tuple[str, ...] = ()


class ItemPaused(ItemStatusEvent):
    type: Literal["item.paused"] = "item.paused"


class ItemClosed(ItemStatusEvent):
    type: Literal["item.closed"] = "item.closed"


class ItemReactivated(ItemStatusEvent):
    """A paused or closed item is active again."""

    type: Literal["item.reactivated"] = "item.reactivated"


CatalogEvent = Annotated[
    ItemCreated
    | ItemSnapshotted
    | ItemUpdated
    | ItemPriceChanged
    | ItemStockChanged
    | ItemPaused
    | ItemClosed
    | ItemReactivated,
    Field(discriminator="type"),
]
CATALOG_EVENT: TypeAdapter[CatalogEvent] = TypeAdapter(CatalogEvent)


def item_event_id(item_id: str, event_type: str, last_updated: datetime) -> UUID:
    """One id per (item, kind of change, ML version): a redelivery yields the same id."""
    return stable_event_id(item_id, event_type, last_updated.isoformat())


def item_event_key(event: ItemEvent) -> bytes:
    return f"{event.seller_id}:{event.item_id}".encode()


# --- peepers.orders.v1 --------------------------------------------------------------


class OrderLine(BaseModel):
    model_config = ConfigDict(frozen=True)

    item_id: str | None = None
    title: str | None = None
    quantity: int
    unit_price: Decimal


class OrderSummary(BaseModel):
    """An order as Peepers mirrors it, in every order event.

    ``state`` is Peepers' lifecycle (created, paid, shipped, delivered, cancelled,
    refunded, partially_refunded, not_delivered); ``ml_status`` and ``shipment_status``
    are ML's own words, kept raw (ML's enums are open). The ``*_at`` times are when the
    order reached each state, as far as ML's data or the notification that revealed it
    tells.
    """

    model_config = ConfigDict(frozen=True)

    order_id: int
    state: str
    ml_status: str
    buyer_id: int
    currency_id: str | None = None
    total_amount: Decimal
    paid_amount: Decimal = Decimal(0)
    refunded_amount: Decimal = Decimal(0)
    lines: tuple[OrderLine, ...] = ()
    pack_id: int | None = None
    shipment_id: int | None = None
    shipment_status: str | None = None
    date_created: AwareDatetime
    paid_at: AwareDatetime | None = None
    shipped_at: AwareDatetime | None = None
    delivered_at: AwareDatetime | None = None


class OrderEvent(DomainEvent):
    """Every order event names the order and carries it as Peepers holds it.

    ``order`` is the order after the fetch that revealed the event: when one fetch shows
    several transitions at once (an order seen ``created``, next ``shipped``), each of
    their events carries that same latest state; ``occurred_at`` is each transition's own
    time. ``revealed_by`` names what showed the change: ``notification:<ML id>``,
    ``backfill:<run>`` or ``sync``.
    """

    order_id: int
    order: OrderSummary
    revealed_by: str


class OrderCreated(OrderEvent):
    """A new sale: ML confirmed the order (not paid yet)."""

    type: Literal["order.created"] = "order.created"


class OrderPaid(OrderEvent):
    type: Literal["order.paid"] = "order.paid"


class OrderShipped(OrderEvent):
    type: Literal["order.shipped"] = "order.shipped"


class OrderDelivered(OrderEvent):
    type: Literal["order.delivered"] = "order.delivered"


class OrderCancelled(OrderEvent):
    type: Literal["order.cancelled"] = "order.cancelled"


class OrderRefunded(OrderEvent):
    """Money went back to the buyer: all of it (``partial`` false) or part of it."""

    type: Literal["order.refunded"] = "order.refunded"
    partial: bool = False


class OrderNotDelivered(OrderEvent):
    """The carrier gave up: the shipment is not_delivered (returning, lost, ...)."""

    type: Literal["order.not_delivered"] = "order.not_delivered"


class OrderSnapshotted(OrderEvent):
    """The order as it stands, for an order Peepers cannot prove it announced before.

    Backfilled history (orders older than the seller's connection) and orders found again
    after the cache was lost come as snapshots, never as ``order.created``. Treat it as
    an upsert; no transition is implied.
    """

    type: Literal["order.snapshot"] = "order.snapshot"


OrdersEvent = Annotated[
    OrderCreated
    | OrderPaid
    | OrderShipped
    | OrderDelivered
    | OrderCancelled
    | OrderRefunded
    | OrderNotDelivered
    | OrderSnapshotted,
    Field(discriminator="type"),
]
ORDERS_EVENT: TypeAdapter[OrdersEvent] = TypeAdapter(OrdersEvent)


def order_event_id(order_id: int, event_type: str, detail: object = "") -> UUID:
    """One id per (order, transition): an order reaches each state at most once.

    ``detail`` tells apart what may repeat: a snapshot's state, a refund's amount.
    """
    return stable_event_id("order", order_id, event_type, detail)


def order_event_key(event: OrderEvent) -> bytes:
    return f"{event.seller_id}:{event.order_id}".encode()


# --- peepers.messages.v1 ------------------------------------------------------------
#
# Questions, post-sale messages and claims as the messages service mirrors them, and the
# support tickets it keeps for claims. Record keys are ``<seller_id>:<kind>:<id>``
# (``question``, ``pack``, ``claim``): every change of one question, conversation or
# claim (its ticket's included) is on one partition, in order. Status words are open:
# ML adds values, and Peepers passes unknown ones on as ML sent them.


class QuestionSnapshot(BaseModel):
    """A question as Peepers mirrors it (``GET /questions/{id}?api_version=4``)."""

    model_config = ConfigDict(frozen=True)

    id: int
    seller_id: int
    item_id: str
    buyer_id: int | None = None
    # UNANSWERED, ANSWERED, CLOSED_UNANSWERED, UNDER_REVIEW, BANNED, DELETED, DISABLED,
    # or whatever ML says next.
    status: str
    text: str
    date_created: AwareDatetime
    last_updated: AwareDatetime
    answer_text: str | None = None
    answer_status: str | None = None
    answered_at: AwareDatetime | None = None


class ClaimSnapshot(BaseModel):
    """A claim as Peepers mirrors it (``/post-purchase/v1/claims/{id}`` and ``/detail``)."""

    model_config = ConfigDict(frozen=True)

    id: int
    seller_id: int
    order_id: int | None = None
    resource: str | None = None
    # opened | closed; type mediations, returns, ...; stage claim, dispute, recontact,
    # stale, none: all open.
    status: str
    type: str | None = None
    stage: str | None = None
    reason_id: str | None = None
    resolution: dict[str, Any] | None = None
    due_date: AwareDatetime | None = None
    action_responsible: str | None = None
    date_created: AwareDatetime | None = None
    last_updated: AwareDatetime


class TicketNote(BaseModel):
    model_config = ConfigDict(frozen=True)

    author: str
    text: str
    at: AwareDatetime


class TicketSnapshot(BaseModel):
    """A support ticket: Peepers' own workflow around one claim.

    ``status`` moves ``open`` → ``in_progress`` → ``waiting_buyer`` / ``resolved`` →
    ``closed``; ``version`` grows by one with every change.
    """

    model_config = ConfigDict(frozen=True)

    claim_id: int
    seller_id: int
    order_id: int | None = None
    status: str
    assignee: str | None = None
    notes: tuple[TicketNote, ...] = ()
    claim_status: str
    claim_stage: str | None = None
    claim_type: str | None = None
    resolution: dict[str, Any] | None = None
    due_date: AwareDatetime | None = None
    action_responsible: str | None = None
    opened_at: AwareDatetime
    updated_at: AwareDatetime
    version: int


class QuestionEvent(DomainEvent):
    question_id: int
    item_id: str


class QuestionReceived(QuestionEvent):
    """A buyer asked the seller a question Peepers had not seen."""

    type: Literal["question.received"] = "question.received"
    question: QuestionSnapshot


class QuestionAnswered(QuestionEvent):
    """The question has an answer at ML (through Peepers or not)."""

    type: Literal["question.answered"] = "question.answered"
    answer_text: str
    answered_at: AwareDatetime | None = None
    # From the question to its answer, when ML gave both dates.
    seconds_to_answer: float | None = None


class QuestionSnapshotted(QuestionEvent):
    """The question's current state, read while Peepers rebuilt a lost cache: an upsert."""

    type: Literal["question.snapshot"] = "question.snapshot"
    question: QuestionSnapshot


class MessageReceived(DomainEvent):
    """A new post-sale message in a pack's conversation (from the buyer or the seller)."""

    type: Literal["message.received"] = "message.received"
    message_id: str
    pack_id: int
    from_user_id: int | None = None
    to_user_id: int | None = None
    text: str | None = None
    status: str | None = None
    created_at: AwareDatetime | None = None


class ClaimEvent(DomainEvent):
    claim_id: int
    claim: ClaimSnapshot


class ClaimOpened(ClaimEvent):
    type: Literal["claim.opened"] = "claim.opened"


class ClaimEscalated(ClaimEvent):
    """The claim went to ``dispute``: ML's mediator decides now."""

    type: Literal["claim.escalated"] = "claim.escalated"


class ClaimClosed(ClaimEvent):
    type: Literal["claim.closed"] = "claim.closed"


class ClaimSnapshotted(ClaimEvent):
    """The claim's current state, read while Peepers rebuilt a lost cache: an upsert."""

    type: Literal["claim.snapshot"] = "claim.snapshot"


class TicketEvent(DomainEvent):
    claim_id: int
    ticket: TicketSnapshot
    # The fields this version changed (``status``, ``assignee``, ``notes``, ``claim_stage``...).
    changed: tuple[str, ...] = ()


class TicketOpened(TicketEvent):
    type: Literal["ticket.opened"] = "ticket.opened"


class TicketUpdated(TicketEvent):
    type: Literal["ticket.updated"] = "ticket.updated"


class TicketClosed(TicketEvent):
    type: Literal["ticket.closed"] = "ticket.closed"


MessagesEvent = Annotated[
    QuestionReceived
    | QuestionAnswered
    | QuestionSnapshotted
    | MessageReceived
    | ClaimOpened
    | ClaimEscalated
    | ClaimClosed
    | ClaimSnapshotted
    | TicketOpened
    | TicketUpdated
    | TicketClosed,
    Field(discriminator="type"),
]
MESSAGES_EVENT: TypeAdapter[MessagesEvent] = TypeAdapter(MessagesEvent)


def messages_event_key(event: DomainEvent) -> bytes:
    """``<seller_id>:<kind>:<id>``: one question, conversation or claim per partition."""
    entity: tuple[str, object]
    if isinstance(event, QuestionEvent):
        entity = ("question", event.question_id)
    elif isinstance(event, MessageReceived):
        entity = ("pack", event.pack_id)
    elif isinstance(event, ClaimEvent | TicketEvent):
        entity = ("claim", event.claim_id)
    else:
        msg = f"{event.type} is not an event of peepers.messages.v1"
        raise TypeError(msg)
    return f"{event.seller_id}:{entity[0]}:{entity[1]}".encode()
