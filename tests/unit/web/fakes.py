"""In-memory read APIs for the web app's unit tests: each keeps every seller's data and
answers only for the seller asked, as the real services do."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

from peepers_auth.web.ports import (
    AnswerRefused,
    CatalogPage,
    Conversation,
    ConversationMessage,
    ConversationSummary,
    DaySales,
    OrderDetail,
    OrderFilter,
    OrderList,
    OrderView,
    Question,
    ServiceNotAvailable,
    Ticket,
    TicketChange,
    TicketNote,
    TimelineStep,
)
from peepers_common.events import ItemSnapshot

SELLER = 3000000001
OTHER = 3000000002
DOWN = "down (a test's outage)"
NOW = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)


def order(order_id: int, seller_id: int = SELLER, state: str = "paid") -> OrderView:
    return OrderView(
        order_id=order_id,
        seller_id=seller_id,
        state=state,
        buyer_id=9000000001,
        currency_id="BRL",
        total_amount=Decimal("1234.56"),
        date_created=NOW,
        titles=("Caneca <b>azul</b>",),
        pack_id=order_id + 1000,
    )


@dataclass
class FakeOrders:
    orders: list[OrderView] = field(default_factory=list)
    days: list[DaySales] = field(default_factory=list)
    down: bool = False
    queries: list[OrderFilter] = field(default_factory=list)
    service: str = "orders"

    def _up(self) -> None:
        if self.down:
            raise ServiceNotAvailable(self.service, DOWN)

    async def search(self, seller_id: int, query: OrderFilter) -> OrderList:
        self._up()
        self.queries.append(query)
        if query.cursor == "stale":
            msg = "cursor is not one this API returned"
            raise ValueError(msg)
        return OrderList([o for o in self.orders if o.seller_id == seller_id])

    async def get(self, seller_id: int, order_id: int) -> OrderDetail | None:
        self._up()
        for o in self.orders:
            if o.order_id == order_id and o.seller_id == seller_id:
                step = TimelineStep(at=o.date_created, kind="order", text="created")
                return OrderDetail(order=o, timeline=(step,))
        return None

    async def sales(self, seller_id: int, first: date, last: date) -> list[DaySales]:
        self._up()
        return [d for d in self.days if first <= d.day <= last]


def conversation(
    pack_id: int, seller_id: int = SELLER, *, status: str = "active", texts: tuple[str, ...] = ()
) -> Conversation:
    """A pack's conversation: the buyer wrote each of ``texts``, none read yet."""
    buyer = 9000000001
    said = tuple(
        ConversationMessage(
            id=f"m{pack_id}-{n}",
            from_user_id=buyer,
            to_user_id=seller_id,
            text=text,
            status="available",
            created_at=NOW,
        )
        for n, text in enumerate(texts)
    )
    substatus = "blocked_by_time" if status == "blocked" else None
    return Conversation(
        pack_id=pack_id, seller_id=seller_id, buyer_id=buyer, status=status,
        substatus=substatus, messages=said,
    )  # fmt: skip


@dataclass
class FakeMessages:
    questions: list[Question] = field(default_factory=list)
    tickets_: list[Ticket] = field(default_factory=list)
    answers: dict[int, str] = field(default_factory=dict)
    conversations_: list[Conversation] = field(default_factory=list)
    # (pack, nonce, text) of every message the seller sent
    sent: list[tuple[int, str, str]] = field(default_factory=list)
    down: bool = False
    service: str = "messages"

    def _up(self) -> None:
        if self.down:
            raise ServiceNotAvailable(self.service, DOWN)

    async def unanswered(self, seller_id: int) -> list[Question]:
        self._up()
        mine = [
            q
            for q in self.questions
            if q.seller_id == seller_id and q.question_id not in self.answers
        ]
        return sorted(mine, key=lambda q: q.date_created)

    async def unanswered_count(self, seller_id: int) -> int:
        return len(await self.unanswered(seller_id))

    async def answer(self, seller_id: int, question_id: int, text: str) -> bool:
        self._up()
        if question_id in self.answers:
            code, msg = "already_answered", "This question was already answered."
            raise AnswerRefused(code, msg)
        if not any(
            q.question_id == question_id and q.seller_id == seller_id for q in self.questions
        ):
            return False
        self.answers[question_id] = text
        return True

    async def conversations(self, seller_id: int) -> list[ConversationSummary]:
        self._up()
        return [
            ConversationSummary(
                **c.model_dump(exclude={"messages"}),
                messages=len(c.messages),
                unread=sum(1 for m in c.messages if m.read_at is None),
                last_message_at=c.messages[-1].created_at if c.messages else None,
            )
            for c in self.conversations_
            if c.seller_id == seller_id
        ]

    async def conversation(self, seller_id: int, pack_id: int) -> Conversation | None:
        self._up()
        return next(
            (c for c in self.conversations_ if c.pack_id == pack_id and c.seller_id == seller_id),
            None,
        )

    async def send(self, seller_id: int, pack_id: int, text: str, *, nonce: str) -> bool:
        found = await self.conversation(seller_id, pack_id)
        if found is None:
            return False
        if found.status == "blocked":
            code, msg = (
                "blocked",
                f"the conversation of pack {pack_id} is blocked ({found.substatus})",
            )
            raise AnswerRefused(code, msg)
        if (pack_id, nonce, text) not in self.sent:
            self.sent.append((pack_id, nonce, text))
        return True

    async def tickets(self, seller_id: int, *, status: str | None = None) -> list[Ticket]:
        self._up()
        return [
            t
            for t in self.tickets_
            if t.seller_id == seller_id and (status is None or t.status == status)
        ]

    async def ticket(self, seller_id: int, claim_id: int) -> Ticket | None:
        self._up()
        return next(
            (t for t in self.tickets_ if t.claim_id == claim_id and t.seller_id == seller_id),
            None,
        )

    async def change_ticket(
        self, seller_id: int, claim_id: int, change: TicketChange
    ) -> Ticket | None:
        current = await self.ticket(seller_id, claim_id)
        if current is None:
            return None
        if change.status == "closed" and current.status == "open":
            msg = "a ticket moves from open to in_progress only"
            raise ValueError(msg)
        notes = current.notes
        if change.note:
            notes = (*notes, TicketNote(at=NOW, author=change.author, text=change.note))
        changed = current.model_copy(
            update={
                "status": change.status or current.status,
                "assignee": None if change.unassign else change.assignee or current.assignee,
                "notes": notes,
            }
        )
        self.tickets_ = [changed if t is current else t for t in self.tickets_]
        return changed

    async def order_thread(self, seller_id: int, order_id: int) -> list[TimelineStep]:
        self._up()
        return [TimelineStep(at=NOW, kind="message", text="message.received: Olá, quando chega?")]


@dataclass
class FakeCatalog:
    items: list[ItemSnapshot] = field(default_factory=list)
    service: str = "catalog"
    asked: list[Mapping[str, str]] = field(default_factory=list)

    async def search(self, seller_id: int, params: Mapping[str, str]) -> CatalogPage:
        self.asked.append(dict(params))
        if params.get("price_min") == "abc":
            msg = "price_min must be a number (got 'abc')"
            raise ValueError(msg)
        mine = [i for i in self.items if i.seller_id == seller_id]
        if params.get("status"):
            mine = [i for i in mine if i.status == params["status"]]
        facets: dict[str, dict[str, int]] = {"status": {}, "category": {}}
        for i in mine:
            facets["status"][i.status] = facets["status"].get(i.status, 0) + 1
            if i.category_id:
                facets["category"][i.category_id] = facets["category"].get(i.category_id, 0) + 1
        return CatalogPage(mine, len(mine), None, facets)

    async def ready(self) -> bool:
        return True


def item(item_id: str, seller_id: int = SELLER, status: str = "active") -> ItemSnapshot:
    return ItemSnapshot(
        id=item_id,
        seller_id=seller_id,
        title=f"Item {item_id}",
        category_id="MLB1055",
        price=Decimal("99.90"),
        currency_id="BRL",
        available_quantity=5,
        sold_quantity=2,
        status=status,
        last_updated=NOW,
    )
