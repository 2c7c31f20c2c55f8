"""What the pages read and change, as the other services' read APIs serve it.

The models are the web app's own view of those answers: they ignore fields they do not
show, so a read API can grow without breaking the pages. Adapters (``adapters/``) raise
`ServiceNotAvailable` when a service is not configured, not reachable or failing, and
`AnswerRefused` when ML (through the messages service) refuses an answer or a message; a
lookup of another seller's id returns ``None``, which the pages show as 404.

::

    PeepersError
    └── WebError
        ├── ServiceNotAvailable     a read API is missing, down or answering 5xx
        └── AnswerRefused           empty, too long, already answered, conversation blocked
                                    (shown by the field)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol

from pydantic import AliasChoices, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from peepers_common.errors import PeepersError
from peepers_common.events import ItemSnapshot

# ML's limit on an answer's length (FACTS.md, questions and answers).
ANSWER_MAX_CHARS = 2000
# What the messages service sends of a post-sale message (its MESSAGES_MESSAGE_MAX_CHARS
# default, FACTS.md 5): the counter's limit. Should that service be set otherwise, its
# refusal is shown beside the field all the same.
MESSAGE_MAX_CHARS = 350


class WebError(PeepersError):
    pass


class ServiceNotAvailable(WebError):
    def __init__(self, service: str, detail: str) -> None:
        super().__init__(f"{service}: {detail}")
        self.service = service


class AnswerRefused(WebError, ValueError):
    """ML's or the messages service's reason, in words for the seller."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


class _View(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class OrderView(_View):
    """An order as the orders service's read API serves it (its ``OrderSummary``)."""

    order_id: int
    seller_id: int
    state: str
    buyer_id: int
    currency_id: str | None = None
    total_amount: Decimal
    date_created: AwareDatetime
    titles: tuple[str, ...] = ()
    # Its conversation's id (every order has one since 2024, FACTS.md 5).
    pack_id: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _titles_of_lines(cls, data: Any) -> Any:
        if isinstance(data, dict) and "titles" not in data:
            lines = data.get("lines") or ()
            titles = [line.get("title") for line in lines if isinstance(line, dict)]
            return {**data, "titles": tuple(t for t in titles if t)}
        return data


class TimelineStep(_View):
    at: AwareDatetime
    kind: str  # "order", "message", "claim"
    text: str


class OrderDetail(_View):
    order: OrderView
    timeline: tuple[TimelineStep, ...] = ()


class DaySales(_View):
    day: date
    orders: int = 0
    revenue: dict[str, Decimal] = {}


class Question(_View):
    """A question as the messages service's inbox serves it (its ``QuestionSnapshot``)."""

    question_id: int = Field(validation_alias=AliasChoices("question_id", "id"))
    seller_id: int
    item_id: str
    text: str
    date_created: AwareDatetime
    status: str = "UNANSWERED"


class ConversationMessage(_View):
    """One post-sale message (the messages service's ``MessageView``)."""

    id: str
    from_user_id: int | None = None
    to_user_id: int | None = None
    text: str | None = None
    status: str | None = None
    created_at: AwareDatetime | None = None
    read_at: AwareDatetime | None = None


class _ConversationHead(_View):
    pack_id: int
    seller_id: int
    buyer_id: int | None = None
    status: str = "active"  # or "blocked", ``substatus`` saying why
    substatus: str | None = None
    claim_id: int | None = None


class ConversationSummary(_ConversationHead):
    """A pack's conversation in the list: how many messages, how many unread."""

    messages: int = 0
    unread: int = 0
    last_message_at: AwareDatetime | None = None


class Conversation(_ConversationHead):
    """A pack's conversation with its messages, oldest first."""

    messages: tuple[ConversationMessage, ...] = ()


class TicketNote(_View):
    at: AwareDatetime
    author: str = ""
    text: str


class Ticket(_View):
    """A support ticket around one claim (the messages service's ``TicketSnapshot``)."""

    claim_id: int
    seller_id: int
    status: str
    order_id: int | None = None
    claim_status: str | None = None
    claim_type: str | None = None
    assignee: str | None = None
    due_date: AwareDatetime | None = None
    opened_at: AwareDatetime | None = None
    notes: tuple[TicketNote, ...] = ()


@dataclass(frozen=True)
class OrderFilter:
    state: str | None = None
    buyer_id: int | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    cursor: str | None = None
    limit: int = 25


@dataclass(frozen=True)
class OrderList:
    orders: list[OrderView]
    next_cursor: str | None = None


@dataclass(frozen=True)
class CatalogPage:
    items: list[ItemSnapshot]
    total: int
    next_cursor: str | None
    facets: Mapping[str, Mapping[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class TicketChange:
    status: str | None = None
    assignee: str | None = None
    # Set to take the ticket away from whoever has it (assignee stays None then).
    unassign: bool = False
    note: str | None = None
    author: str = "seller"


class CatalogReader(Protocol):
    async def search(self, seller_id: int, params: Mapping[str, str]) -> CatalogPage:
        """The catalog's search (``q``, ``status``, ``category``, ``price_min/max``, ``cursor``).

        Raises `ValueError` with the API's words when it refuses the query (400).
        """
        ...

    async def ready(self) -> bool: ...


class OrdersReader(Protocol):
    async def search(self, seller_id: int, query: OrderFilter) -> OrderList: ...

    async def get(self, seller_id: int, order_id: int) -> OrderDetail | None: ...

    async def sales(self, seller_id: int, first: date, last: date) -> list[DaySales]: ...


class MessagesReader(Protocol):
    async def unanswered(self, seller_id: int) -> list[Question]:
        """The seller's unanswered questions, oldest first (the first 200)."""
        ...

    async def unanswered_count(self, seller_id: int) -> int:
        """How many questions wait for an answer (all of them, not one page)."""
        ...

    async def answer(self, seller_id: int, question_id: int, text: str) -> bool:
        """False when the seller has no such question; raises `AnswerRefused`."""
        ...

    async def conversations(self, seller_id: int) -> list[ConversationSummary]:
        """The seller's pack conversations, the latest message first (the first 50)."""
        ...

    async def conversation(self, seller_id: int, pack_id: int) -> Conversation | None: ...

    async def send(self, seller_id: int, pack_id: int, text: str, *, nonce: str) -> bool:
        """Message the pack's buyer, once per ``nonce`` and text.

        A form resent or clicked twice sends once. False when the seller has no such
        conversation; raises `AnswerRefused` (empty, too long, blocked).
        """
        ...

    async def tickets(self, seller_id: int, *, status: str | None = None) -> list[Ticket]: ...

    async def ticket(self, seller_id: int, claim_id: int) -> Ticket | None: ...

    async def change_ticket(
        self, seller_id: int, claim_id: int, change: TicketChange
    ) -> Ticket | None:
        """Apply the change's parts; raises `ValueError` with the reason for a refused move."""
        ...

    async def order_thread(self, seller_id: int, order_id: int) -> list[TimelineStep]:
        """The order's messages, questions and claim steps, as the messages service merges them."""
        ...


class ReadyCheck(Protocol):
    service: str

    async def ready(self) -> bool: ...


@dataclass(frozen=True)
class Readers:
    """The read APIs the pages use; ``ready`` probes each service for the sync state."""

    catalog: CatalogReader
    orders: OrdersReader
    messages: MessagesReader
    ready: Mapping[str, ReadyCheck] = field(default_factory=dict)


@dataclass(frozen=True)
class SellerStatus:
    """What the public ``peepers.sellers.v1`` topic last said about a seller."""

    status: str  # connected, reauth_required, disconnected
    nickname: str | None = None
    site_id: str | None = None
    since: datetime | None = None
