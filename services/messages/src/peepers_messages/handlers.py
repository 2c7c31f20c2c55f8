"""What the worker does with ML's notifications and the events it consumes.

Plain async functions over `Messages` (built by the composition root or a test).

Order of effects for one change (a transactional outbox, as in the catalog): the mirror
write is a compare-and-set on the version the events were computed from and stores those
events in the entity's outbox in the same transaction; the writer that wins publishes
them, then clears them. A crash in between leaves them in the outbox, where the next
handling of the entity (the redelivered record) publishes them first, with the same
deterministic ids (consumers deduplicate on ``event_id``).

Tickets are Peepers-owned: a change is written to the tickets changelog first (acks=all),
then to its Redis view, then announced; ``ticket:{claim}:announced`` remembers the last
version announced, so a crash before the announcement is made good on the next handling.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, Protocol, get_args

from pydantic import TypeAdapter

from peepers_common.errors import CacheUnavailable, MlNotFound
from peepers_common.events import (
    ORDERS_EVENT,
    ClaimClosed,
    ClaimEscalated,
    ClaimOpened,
    ClaimSnapshot,
    ClaimSnapshotted,
    DomainEvent,
    MessageReceived,
    MessagesEvent,
    OrdersEvent,
    OrderSnapshotted,
    QuestionAnswered,
    QuestionReceived,
    QuestionSnapshot,
    QuestionSnapshotted,
    TicketClosed,
    TicketOpened,
    TicketSnapshot,
    TicketUpdated,
    event_headers,
    event_type_of,
    messages_event_key,
    occurred,
    stable_event_id,
)
from peepers_common.kafka import EventPublisher, Published
from peepers_common.ml.models import MlConversationStatus, MlMessage, MlQuestion
from peepers_common.notifications import Notification
from peepers_common.rebuild import STEADY_CACHE, CacheEpoch
from peepers_messages import metrics
from peepers_messages.adapters.redis_mirror import QuestionWrite, RedisMirror
from peepers_messages.adapters.redis_views import (
    ConversationRecord,
    RedisConversations,
    RedisTickets,
    TicketRecord,
)
from peepers_messages.domain import (
    InvalidNotification,
    NotFound,
    TicketStatus,
    claim_snapshot,
    follow_claim,
    is_answered,
    new_ticket,
    question_snapshot,
    seconds_to_answer,
)
from peepers_messages.ports import (
    ConversationView,
    MessagesSource,
    MessageView,
    TimelineEntry,
)

log = logging.getLogger(__name__)

# Resources are data (ARCHITECTURE.md): each topic's resource by a strict pattern.
_QUESTION: Final = re.compile(r"^/questions/(\d{1,20})$")
_MESSAGE: Final = re.compile(r"^/(?:messages/)?([0-9A-Za-z]{8,64})$")
_CLAIM: Final = re.compile(r"^/(?:post-purchase/v1/claims/)?(\d{1,20})$")
_CAS_ATTEMPTS: Final = 5
# A conversation's page: the sandbox's (and public clients') largest.
PACK_PAGE: Final = 100
_PENDING: Final = TypeAdapter(list[MessagesEvent])
SOURCE: Final = "peepers-messages"


class Changelog(Protocol):
    """What the handlers need of `peepers_common.changelog.Changelog`."""

    async def write(self, key: str | bytes, value: bytes | None) -> Published: ...

    async def verify(self) -> bool: ...


class Outcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    STALE = "stale"
    GONE = "gone"


@dataclass(frozen=True)
class Messages:
    """Everything the handlers need."""

    ml: MessagesSource
    mirror: RedisMirror
    tickets: RedisTickets
    ticket_log: Changelog
    # The packs holding a conversation, per seller (Peepers-owned, restored after a loss).
    conversations: RedisConversations
    conversation_log: Changelog
    publisher: EventPublisher
    events_topic: str
    clock: Callable[[], float] = time.time
    # Watches the mirror's epoch: what is first met while rebuilding is a snapshot.
    cache: CacheEpoch = STEADY_CACHE

    def now(self) -> datetime:
        return occurred(self.clock())


def _match(pattern: re.Pattern[str], notification: Notification, what: str) -> str:
    match = pattern.match(notification.resource_path)
    if match is None:
        msg = f"resource {notification.resource_path!r} does not name a {what}"
        raise InvalidNotification(msg)
    return match.group(1)


# --- the outbox ---------------------------------------------------------------------


def _encode(events: Sequence[DomainEvent]) -> bytes | None:
    if not events:
        return None
    return b"[" + b",".join(event.model_dump_json().encode() for event in events) + b"]"


async def publish(events: Sequence[DomainEvent], deps: Messages) -> None:
    for event in events:
        await deps.publisher.publish(
            deps.events_topic,
            key=messages_event_key(event),
            value=event.model_dump_json().encode(),
            headers=event_headers(event, source=SOURCE),
        )
        metrics.EVENTS.labels(event.type).inc()


async def flush_outbox(entity: str, deps: Messages, pending: bytes | None = None) -> None:
    """Publish an entity's unsent events, then clear them (at-least-once)."""
    if pending is None:
        pending = await deps.mirror.pending(entity)
        if pending is None:
            return
    await publish(list(_PENDING.validate_json(pending)), deps)
    await deps.mirror.clear_pending(entity, pending)


def _counted(entity: str, outcome: Outcome) -> Outcome:
    metrics.APPLIED.labels(entity, outcome.value).inc()
    return outcome


# --- questions ----------------------------------------------------------------------


async def on_question(notification: Notification, deps: Messages) -> Outcome:
    """A ``questions`` notification: fetch the question (``api_version=4``) and apply it."""
    question_id = int(_match(_QUESTION, notification, "question"))
    seller_id = notification.user_id
    try:
        question = await deps.ml.get_question(question_id, seller_id=seller_id)
    except MlNotFound:
        return _counted("question", Outcome.GONE)  # ML deletes old unanswered questions
    if question.seller_id != seller_id:
        msg = f"question {question_id} belongs to seller {question.seller_id}, not {seller_id}"
        raise InvalidNotification(msg)
    return await apply_question(question, deps)


def question_events(
    cached: QuestionSnapshot | None, new: QuestionSnapshot, *, now: datetime, rebuild: bool
) -> list[DomainEvent]:
    """The events a question's new version makes; ids are one per (question, type)."""
    common: dict[str, Any] = {
        "occurred_at": now,
        "seller_id": new.seller_id,
        "question_id": new.id,
        "item_id": new.item_id,
    }
    events: list[DomainEvent] = []
    if cached is None:
        if rebuild:
            event_id = stable_event_id(new.id, "question.snapshot", new.last_updated.isoformat())
            return [QuestionSnapshotted(event_id=event_id, question=new, **common)]
        event_id = stable_event_id(new.id, "question.received")
        events.append(QuestionReceived(event_id=event_id, question=new, **common))
    if is_answered(new) and (cached is None or not is_answered(cached)):
        events.append(
            QuestionAnswered(
                event_id=stable_event_id(new.id, "question.answered"),
                answer_text=new.answer_text or "",
                answered_at=new.answered_at,
                seconds_to_answer=seconds_to_answer(new),
                **common,
            )
        )
    return events


async def apply_question(question: MlQuestion, deps: Messages, *, rebuild: bool = False) -> Outcome:
    """Bring the mirror and the event stream up to ``question``, at most once each."""
    new = question_snapshot(question)
    entity = f"question:{new.id}"
    for _ in range(_CAS_ATTEMPTS):
        await flush_outbox(entity, deps)
        cached = await deps.mirror.question(new.id)
        if cached is not None and new.last_updated <= cached.last_updated:
            same = cached == new
            return _counted("question", Outcome.UNCHANGED if same else Outcome.STALE)
        if cached is None:
            rebuild = rebuild or await deps.cache.after_miss()
        events = question_events(cached, new, now=deps.now(), rebuild=rebuild)
        pending = _encode(events)
        if await deps.mirror.put_question(new, previous=cached, pending=pending):
            if pending is not None:
                await flush_outbox(entity, deps, pending)
            _observe_time_to_answer(events)
            return _counted("question", Outcome.CREATED if cached is None else Outcome.UPDATED)
    msg = f"question {new.id}: the mirror kept changing under {_CAS_ATTEMPTS} writes"
    raise CacheUnavailable(msg)


async def apply_questions(questions: Sequence[MlQuestion], deps: Messages) -> list[Outcome]:
    """`apply_question` for a page of questions (a backfill's), in a few round trips.

    The page is read in one pipeline and written in one script, its events published
    together and its outboxes cleared in one pipeline. A question with unsent events
    goes the one-by-one way (which publishes them first), and so does the whole page if
    a webhook changed one of its questions meanwhile.
    """
    found = {question.id: question for question in questions}
    news = {question_id: question_snapshot(q) for question_id, q in found.items()}
    states = await deps.mirror.question_states(list(news))
    outcomes: dict[int, Outcome] = {}
    one_by_one: list[int] = []
    events: dict[int, list[DomainEvent]] = {}
    writes: list[QuestionWrite] = []
    rebuild: bool | None = None
    for new, (pending, cached) in zip(news.values(), states, strict=True):
        if pending is not None:
            one_by_one.append(new.id)
        elif cached is not None and new.last_updated <= cached.last_updated:
            outcomes[new.id] = Outcome.UNCHANGED if cached == new else Outcome.STALE
        else:
            if cached is None and rebuild is None:
                rebuild = await deps.cache.after_miss()
            made = question_events(cached, new, now=deps.now(), rebuild=bool(rebuild))
            events[new.id] = made
            writes.append(QuestionWrite(new, cached, _encode(made)))
            outcomes[new.id] = Outcome.CREATED if cached is None else Outcome.UPDATED
    if not await deps.mirror.put_questions(writes):
        return [await apply_question(question, deps) for question in questions]
    published = [(w.question.id, w.pending) for w in writes if w.pending is not None]
    await asyncio.gather(*(publish(events[question_id], deps) for question_id, _ in published))
    await deps.mirror.clear_many([(f"question:{q}", pending) for q, pending in published])
    for made in events.values():
        _observe_time_to_answer(made)
    applied = [_counted("question", outcome) for outcome in outcomes.values()]
    for question_id in one_by_one:
        applied.append(await apply_question(found[question_id], deps))
    return applied


def _observe_time_to_answer(events: Sequence[DomainEvent]) -> None:
    for event in events:
        if isinstance(event, QuestionAnswered) and event.seconds_to_answer is not None:
            metrics.TIME_TO_ANSWER.observe(event.seconds_to_answer)


# --- post-sale messages -------------------------------------------------------------


def message_view(message: MlMessage, pack_id: int) -> MessageView:
    moderation = (message.message_moderation or {}).get("status")
    return MessageView(
        id=message.id,
        pack_id=pack_id,
        from_user_id=message.user_id("from"),
        to_user_id=message.user_id("to"),
        text=message.text,
        status=message.status,
        moderation=moderation if isinstance(moderation, str) else None,
        attachments=len(message.message_attachments),
        created_at=message.created,  # ISO text: pydantic parses it
        read_at=message.read,
    )


async def on_message(notification: Notification, deps: Messages) -> Outcome:
    """A ``messages`` notification (``created`` or ``read``): the message and its pack.

    ML's messaging quota (500 reads a minute for every seller, FACTS.md 5.2) is the scarce
    resource, so a message of a conversation already mirrored costs one request: the
    message. A conversation met for the first time (or lost with the mirror) is synced
    whole, status and every message, with one more: messages ML never notified (a
    conversation older than the seller's connection) join the mirror with it.
    """
    message_id = _match(_MESSAGE, notification, "message")
    seller_id = notification.user_id
    try:
        page = await deps.ml.get_message(message_id, seller_id=seller_id)
    except MlNotFound:
        return _counted("message", Outcome.GONE)
    found = [m for m in page.messages if m.id == message_id]
    if not found or found[0].pack_id is None:
        msg = f"ML's answer for message {message_id} does not hold it with its pack"
        raise InvalidNotification(msg)
    message = found[0]
    pack_id = found[0].pack_id
    if seller_id not in (message.user_id("from"), message.user_id("to")):
        msg = f"message {message_id} is not in a conversation of seller {seller_id}"
        raise InvalidNotification(msg)
    cached = await deps.mirror.conversation(pack_id)
    if cached is None:
        return await sync_conversation(pack_id, seller_id, deps, also=message)
    head = cached.model_copy(update={"messages": ()})
    return await apply_message(head, message_view(message, pack_id), deps)


async def sync_conversation(
    pack_id: int, seller_id: int, deps: Messages, *, also: MlMessage | None = None
) -> Outcome:
    """Bring a pack's conversation (status and every message) into the mirror.

    ``also``: a message known to be in the pack (the notified one), applied even if ML's
    page does not list it yet. A pack without messages has no conversation to mirror.
    """
    messages: list[MlMessage] = []
    status: MlConversationStatus | None = None
    while True:
        page = await deps.ml.get_pack_messages(
            pack_id, seller_id=seller_id, offset=len(messages), limit=PACK_PAGE
        )
        status = status or page.conversation_status
        messages += page.messages
        total = int((page.paging or {}).get("total") or 0)
        if not page.messages or len(messages) >= total:
            break
    if also is not None and all(m.id != also.id for m in messages):
        messages.append(also)
    if not messages:
        return Outcome.UNCHANGED
    await index_conversation(ConversationRecord(seller_id=seller_id, pack_id=pack_id), deps)
    views = [message_view(m, pack_id) for m in messages]
    first = views[0]
    head = ConversationView(
        pack_id=pack_id,
        seller_id=seller_id,
        buyer_id=first.to_user_id if first.from_user_id == seller_id else first.from_user_id,
        status=status.status if status else "active",
        substatus=status.substatus if status else None,
        claim_id=status.claim_id if status else None,
    )
    outcomes = {await apply_message(head, view, deps) for view in views}
    for outcome in (Outcome.CREATED, Outcome.UPDATED):
        if outcome in outcomes:
            return outcome
    return Outcome.UNCHANGED


async def index_conversation(record: ConversationRecord, deps: Messages) -> None:
    """Note a pack holding a conversation (or a seller scanned whole) in the index.

    Changelog first, then the view, as tickets: a conversation in the mirror is in the
    changelog, so a rebuild after a loss reads it again (`backfill`). Noted once: a pack
    the view holds already costs one Redis read.
    """
    if record.pack_id is not None and await deps.conversations.holds(
        record.seller_id, record.pack_id
    ):
        return
    await deps.conversation_log.write(record.key, record.model_dump_json().encode())
    await deps.conversations.put([record])


async def apply_message(head: ConversationView, view: MessageView, deps: Messages) -> Outcome:
    entity = f"pack:{head.pack_id}"
    await flush_outbox(entity, deps)
    cached = await deps.mirror.conversation(head.pack_id)
    known = cached is not None and any(m.id == view.id for m in cached.messages)
    events: list[DomainEvent] = []
    if not known:
        events.append(
            MessageReceived(
                event_id=stable_event_id(view.id, "message.received"),
                occurred_at=deps.now(),
                seller_id=head.seller_id,
                message_id=view.id,
                pack_id=head.pack_id,
                from_user_id=view.from_user_id,
                to_user_id=view.to_user_id,
                text=view.text,
                status=view.status,
                created_at=view.created_at,
            )
        )
    pending = _encode(events)
    changed = await deps.mirror.put_conversation(head, view, pending=pending)
    if changed and pending is not None:
        await flush_outbox(entity, deps, pending)
    if view.created_at is not None:
        entry = TimelineEntry(
            id=f"message:{view.id}",
            at=view.created_at,
            kind="message",
            type="message.received",
            detail={"message_id": view.id, "from_user_id": view.from_user_id, "text": view.text},
        )
        await deps.mirror.add_timeline(f"pack:{head.pack_id}", [entry])
    if not changed:
        return _counted("message", Outcome.UNCHANGED)
    return _counted("message", Outcome.UPDATED if known else Outcome.CREATED)


# --- claims and tickets -------------------------------------------------------------


async def on_claim(notification: Notification, deps: Messages) -> Outcome:
    """A ``post_purchase`` notification (``claims`` / ``claims_actions``)."""
    claim_id = int(_match(_CLAIM, notification, "claim"))
    seller_id = notification.user_id
    claim = await deps.ml.get_claim(claim_id, seller_id=seller_id)
    if claim.player("respondent") != seller_id:
        msg = f"claim {claim_id} does not have seller {seller_id} as its respondent"
        raise InvalidNotification(msg)
    try:
        detail = await deps.ml.get_claim_detail(claim_id, seller_id=seller_id)
    except MlNotFound:
        detail = None
    return await apply_claim(claim_snapshot(claim, detail, seller_id), deps)


def claim_events(
    cached: ClaimSnapshot | None, new: ClaimSnapshot, *, now: datetime, rebuild: bool = False
) -> list[DomainEvent]:
    """The events a claim's new version makes; ids are one per (claim, type, version).

    A claim first met while rebuilding a lost mirror is a snapshot: no transition can be
    told from it.
    """
    version = new.last_updated.isoformat()
    kinds: list[type[ClaimOpened | ClaimEscalated | ClaimClosed | ClaimSnapshotted]] = []
    if cached is None and rebuild:
        kinds.append(ClaimSnapshotted)
    else:
        if cached is None:
            kinds.append(ClaimOpened)
        if new.stage == "dispute" and (cached is None or cached.stage != "dispute"):
            kinds.append(ClaimEscalated)
        if new.status == "closed" and (cached is None or cached.status != "closed"):
            kinds.append(ClaimClosed)
    return [
        kind(
            event_id=stable_event_id(new.id, kind.model_fields["type"].default, version),
            occurred_at=now,
            seller_id=new.seller_id,
            claim_id=new.id,
            claim=new,
        )
        for kind in kinds
    ]


async def apply_claim(claim: ClaimSnapshot, deps: Messages) -> Outcome:
    entity = f"claim:{claim.id}"
    outcome = Outcome.UNCHANGED
    for _ in range(_CAS_ATTEMPTS):
        await flush_outbox(entity, deps)
        cached = await deps.mirror.claim(claim.id)
        if cached is not None and claim.last_updated < cached.last_updated:
            return _counted("claim", Outcome.STALE)
        if cached == claim:
            break
        rebuild = cached is None and await deps.cache.after_miss()
        events = claim_events(cached, claim, now=deps.now(), rebuild=rebuild)
        pending = _encode(events)
        if await deps.mirror.put_claim(claim, previous=cached, pending=pending):
            if pending is not None:
                await flush_outbox(entity, deps, pending)
            await _claim_timeline(claim, events, deps)
            outcome = Outcome.CREATED if cached is None else Outcome.UPDATED
            break
    else:
        msg = f"claim {claim.id}: the mirror kept changing under {_CAS_ATTEMPTS} writes"
        raise CacheUnavailable(msg)
    await sync_ticket(claim, deps)
    return _counted("claim", outcome)


async def _claim_timeline(
    claim: ClaimSnapshot, events: Sequence[DomainEvent], deps: Messages
) -> None:
    if claim.order_id is None:
        return
    await deps.mirror.link_order(claim.order_id, claim.seller_id, None)
    entries = [
        TimelineEntry(
            id=str(event.event_id),
            at=claim.last_updated,
            kind="claim",
            type=event.type,
            detail={"claim_id": claim.id, "stage": claim.stage, "status": claim.status},
        )
        for event in events
    ]
    await deps.mirror.add_timeline(f"order:{claim.order_id}", entries)


async def load_ticket(claim_id: int, deps: Messages) -> TicketRecord | None:
    """The ticket's record; a miss checks the view was not lost (restoring it if it was)."""
    record = await deps.tickets.record(claim_id)
    if record is None and await deps.ticket_log.verify():
        record = await deps.tickets.record(claim_id)
    return record


async def sync_ticket(claim: ClaimSnapshot, deps: Messages) -> TicketSnapshot:
    """Open the claim's ticket, or apply ML's changes of the claim to it."""
    async with deps.tickets.lock(claim.id):
        record = await load_ticket(claim.id, deps)
        if record is None:
            ticket = new_ticket(claim, deps.now())
            event = "ticket.closed" if ticket.status == TicketStatus.CLOSED else "ticket.opened"
            return await save_ticket(TicketRecord(ticket=ticket, event=event), deps)
        await announce_ticket(record, deps)
        ticket, changed = follow_claim(record.ticket, claim, deps.now())
        if not changed:
            return ticket
        return await save_ticket(_record(record.ticket, ticket, changed), deps)


def _record(old: TicketSnapshot, new: TicketSnapshot, changed: tuple[str, ...]) -> TicketRecord:
    closing = new.status == TicketStatus.CLOSED and old.status != TicketStatus.CLOSED
    return TicketRecord(
        ticket=new, event="ticket.closed" if closing else "ticket.updated", changed=changed
    )


async def change_ticket(
    claim_id: int,
    seller_id: int,
    change: Callable[[TicketSnapshot, datetime], TicketSnapshot],
    deps: Messages,
) -> TicketSnapshot:
    """A person's change (status, assignee, note) to a ticket of ``seller_id``."""
    async with deps.tickets.lock(claim_id):
        record = await load_ticket(claim_id, deps)
        if record is None or record.ticket.seller_id != seller_id:
            msg = f"seller {seller_id} has no ticket for claim {claim_id}"
            raise NotFound(msg)
        await announce_ticket(record, deps)
        old = record.ticket
        new = change(old, deps.now())
        changed = tuple(
            name
            for name in ("status", "assignee", "notes")
            if getattr(old, name) != getattr(new, name)
        )
        return await save_ticket(_record(old, new, changed), deps)


async def save_ticket(record: TicketRecord, deps: Messages) -> TicketSnapshot:
    """Changelog first (the system of record), then the view, then the announcement."""
    ticket = record.ticket
    await deps.ticket_log.write(str(ticket.claim_id), record.model_dump_json().encode())
    await deps.tickets.put(record)
    await announce_ticket(record, deps)
    return ticket


_TICKET_EVENTS: Final[dict[str, type[TicketOpened | TicketUpdated | TicketClosed]]] = {
    "ticket.opened": TicketOpened,
    "ticket.updated": TicketUpdated,
    "ticket.closed": TicketClosed,
}


async def announce_ticket(record: TicketRecord, deps: Messages) -> None:
    """Publish the record's event unless it went out already (id: claim, version)."""
    ticket = record.ticket
    if await deps.tickets.announced(ticket.claim_id) >= ticket.version:
        return
    kind = _TICKET_EVENTS[record.event]
    event = kind(
        event_id=stable_event_id(ticket.claim_id, "ticket", ticket.version),
        occurred_at=ticket.updated_at,
        seller_id=ticket.seller_id,
        claim_id=ticket.claim_id,
        ticket=ticket,
        changed=record.changed,
    )
    await publish([event], deps)
    await deps.tickets.mark_announced(ticket.claim_id, ticket.version)


# --- the orders' events, for order timelines ----------------------------------------


_ORDER_TYPES: Final = frozenset(get_args(get_args(OrdersEvent)[0]))
_KNOWN_ORDER_TYPES: Final = frozenset(m.model_fields["type"].default for m in _ORDER_TYPES)


async def on_order_event(raw: bytes, deps: Messages) -> Outcome:
    """An ``peepers.orders.v1`` event joins its order's timeline (as any team reads it).

    Types newer than this code are skipped (a v1 topic gains types); a snapshot is no
    moment of the order's life, but still tells whose the order is and its pack.
    """
    if event_type_of(raw) not in _KNOWN_ORDER_TYPES:
        return Outcome.UNCHANGED
    event = ORDERS_EVENT.validate_json(raw)
    await deps.mirror.link_order(event.order_id, event.seller_id, event.order.pack_id)
    if isinstance(event, OrderSnapshotted):
        return Outcome.UNCHANGED
    entry = TimelineEntry(
        id=str(event.event_id),
        at=event.occurred_at,
        kind="order",
        type=event.type,
        detail={"state": event.order.state, "ml_status": event.order.ml_status},
    )
    await deps.mirror.add_timeline(f"order:{event.order_id}", [entry])
    return Outcome.UPDATED


async def order_timeline(order_id: int, deps: Messages) -> list[TimelineEntry]:
    """One order's life in time order: its events, its pack's messages, its claims."""
    pack_id = await deps.mirror.pack_of(order_id)
    entries = [
        *await deps.mirror.timeline(f"order:{order_id}"),
        *await deps.mirror.timeline(f"pack:{pack_id}"),
    ]
    return sorted(entries, key=lambda e: (e.at, e.id))
