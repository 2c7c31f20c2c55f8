"""The messages service's rules, pure (no I/O): statuses, answers, claims and tickets.

* **Statuses are open** (FACTS.md 11: meli_oerp's claims screen went empty on one unknown
  claim type). A question, message or claim status Peepers does not know is kept as ML
  sent it and passed on; only the values the rules below name change behaviour.
* **Answers** are refused before ML sees them when empty, longer than 2,000 characters
  (ML's limit, FACTS.md 5.1) or when the question is no longer ``UNANSWERED``.
* **Tickets** follow a workflow: ``open`` → ``in_progress`` → ``waiting_buyer`` /
  ``resolved`` → ``closed``. People move a ticket along `TRANSITIONS`; ML moves it too:
  a claim ML closes closes its ticket, and a closed claim the buyer reopens
  (``recontact``) opens it again.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from peepers_common.errors import PeepersError
from peepers_common.events import ClaimSnapshot, QuestionSnapshot, TicketNote, TicketSnapshot
from peepers_common.ml.models import MlClaim, MlClaimDetail, MlQuestion


class MessagesError(PeepersError):
    """Root of the messages service's refusals (each maps to one clear 4xx)."""

    status = 400
    code = "bad_request"


class InvalidNotification(MessagesError, ValueError):
    """A notification whose resource does not name what its topic carries (to the DLQ)."""


class NotFound(MessagesError, LookupError):
    """No such entity for this seller (another seller's id answers the same)."""

    status = 404
    code = "not_found"


class InvalidAnswer(MessagesError, ValueError):
    """An answer that breaks a rule; ``rule`` names which."""

    status = 422
    code = "invalid_answer"

    def __init__(self, detail: str, *, rule: str) -> None:
        super().__init__(detail)
        self.rule = rule


class InvalidMessage(InvalidAnswer):
    code = "invalid_message"


class QuestionNotOpen(MessagesError):
    """The question is no longer ``UNANSWERED``."""

    status = 409
    code = "question_not_unanswered"


class ConversationBlocked(MessagesError):
    """ML takes no message into this conversation; ``substatus`` says why."""

    status = 409
    code = "conversation_blocked"

    def __init__(self, detail: str, *, substatus: str | None) -> None:
        super().__init__(detail)
        self.substatus = substatus


class IdempotencyConflict(MessagesError):
    """An idempotency key used again with a different body, or a submission under way."""

    status = 409
    code = "idempotency_conflict"


class IllegalTransition(MessagesError, ValueError):
    """A ticket status change the workflow does not allow."""

    status = 409
    code = "illegal_transition"


class InvalidTicketChange(MessagesError, ValueError):
    status = 422
    code = "invalid_ticket_change"


# --- questions --------------------------------------------------------------------

# Question statuses are open (FACTS.md 5.1): UNANSWERED, ANSWERED, CLOSED_UNANSWERED,
# UNDER_REVIEW, BANNED, DELETED, DISABLED today. Only these two change behaviour.
UNANSWERED: Final = "UNANSWERED"
ANSWERED: Final = "ANSWERED"
ANSWER_MAX_CHARS: Final = 2000


def question_snapshot(question: MlQuestion) -> QuestionSnapshot:
    answer = question.answer
    answered_at = _aware(answer.date_created) if answer and answer.date_created else None
    last = question.last_updated or answered_at or question.date_created
    return QuestionSnapshot(
        id=question.id,
        seller_id=question.seller_id,
        item_id=question.item_id,
        buyer_id=question.buyer_id,
        status=question.status,
        text=question.text,
        date_created=_aware(question.date_created),
        last_updated=_aware(last),
        answer_text=answer.text if answer is not None else None,
        answer_status=answer.status if answer is not None else None,
        answered_at=answered_at,
    )


def is_answered(question: QuestionSnapshot) -> bool:
    return question.status == ANSWERED and question.answer_text is not None


def seconds_to_answer(question: QuestionSnapshot) -> float | None:
    if question.answered_at is None:
        return None
    return max((question.answered_at - question.date_created).total_seconds(), 0.0)


def validate_answer(text: str, question: QuestionSnapshot | None) -> str:
    """The answer to send, or `InvalidAnswer` / `QuestionNotOpen` naming the rule broken."""
    stripped = text.strip()
    if not stripped:
        msg = "the answer is empty"
        raise InvalidAnswer(msg, rule="not_empty")
    if len(text) > ANSWER_MAX_CHARS:
        msg = f"the answer has {len(text)} characters; ML takes at most {ANSWER_MAX_CHARS}"
        raise InvalidAnswer(msg, rule="max_length")
    if question is not None and question.status != UNANSWERED:
        msg = f"question {question.id} is {question.status}, not {UNANSWERED}"
        raise QuestionNotOpen(msg)
    return text


def validate_message(text: str, max_chars: int) -> str:
    if not text.strip():
        msg = "the message is empty"
        raise InvalidMessage(msg, rule="not_empty")
    if len(text) > max_chars:
        msg = f"the message has {len(text)} characters; at most {max_chars} are sent"
        raise InvalidMessage(msg, rule="max_length")
    return text


# --- conversations ----------------------------------------------------------------

# A conversation is active or blocked; the substatus says why (blocked_by_time, _buyer,
# _mediation, _fulfillment: FACTS.md 11), kept as ML sent it.
BLOCKED: Final = "blocked"


# --- claims and tickets -----------------------------------------------------------


def claim_snapshot(claim: MlClaim, detail: MlClaimDetail | None, seller_id: int) -> ClaimSnapshot:
    last = claim.last_updated or claim.date_created or datetime.now(UTC)
    return ClaimSnapshot(
        id=claim.id,
        seller_id=seller_id,
        order_id=claim.resource_id,
        resource=claim.resource,
        status=claim.status,
        type=claim.type,
        stage=claim.stage,
        reason_id=claim.reason_id,
        resolution=claim.resolution,
        due_date=_aware(detail.due_date) if detail and detail.due_date else None,
        action_responsible=detail.action_responsible if detail else None,
        date_created=_aware(claim.date_created) if claim.date_created else None,
        last_updated=_aware(last),
    )


class TicketStatus(StrEnum):
    OPEN = "open"
    IN_PROGRESS = "in_progress"
    WAITING_BUYER = "waiting_buyer"
    RESOLVED = "resolved"
    CLOSED = "closed"


# What a person may do; ML's own moves (`follow_claim`) are not limited by it.
TRANSITIONS: Final[Mapping[TicketStatus, frozenset[TicketStatus]]] = {
    TicketStatus.OPEN: frozenset({TicketStatus.IN_PROGRESS}),
    TicketStatus.IN_PROGRESS: frozenset({TicketStatus.WAITING_BUYER, TicketStatus.RESOLVED}),
    TicketStatus.WAITING_BUYER: frozenset({TicketStatus.IN_PROGRESS, TicketStatus.RESOLVED}),
    TicketStatus.RESOLVED: frozenset({TicketStatus.CLOSED, TicketStatus.IN_PROGRESS}),
    TicketStatus.CLOSED: frozenset(),
}
NOTE_MAX_CHARS: Final = 5000
_CLAIM_FIELDS: Final = {
    "claim_status": "status",
    "claim_stage": "stage",
    "claim_type": "type",
    "resolution": "resolution",
    "due_date": "due_date",
    "action_responsible": "action_responsible",
    "order_id": "order_id",
}


def new_ticket(claim: ClaimSnapshot, now: datetime) -> TicketSnapshot:
    closed = claim.status == "closed"
    return TicketSnapshot(
        claim_id=claim.id,
        seller_id=claim.seller_id,
        order_id=claim.order_id,
        status=TicketStatus.CLOSED if closed else TicketStatus.OPEN,
        claim_status=claim.status,
        claim_stage=claim.stage,
        claim_type=claim.type,
        resolution=claim.resolution,
        due_date=claim.due_date,
        action_responsible=claim.action_responsible,
        opened_at=now,
        updated_at=now,
        version=1,
    )


def follow_claim(
    ticket: TicketSnapshot, claim: ClaimSnapshot, now: datetime
) -> tuple[TicketSnapshot, tuple[str, ...]]:
    """The ticket with ML's view of its claim applied, and the fields that changed."""
    changes: dict[str, object] = {
        field: getattr(claim, source)
        for field, source in _CLAIM_FIELDS.items()
        if getattr(ticket, field) != getattr(claim, source)
    }
    if claim.status == "closed" and ticket.status != TicketStatus.CLOSED:
        changes["status"] = TicketStatus.CLOSED
    elif claim.status == "opened" and ticket.status == TicketStatus.CLOSED:
        changes["status"] = TicketStatus.OPEN  # reopened at ML (recontact)
    if not changes:
        return ticket, ()
    return _next(ticket, now, **changes), tuple(sorted(changes))


def move_ticket(ticket: TicketSnapshot, to: str, now: datetime) -> TicketSnapshot:
    try:
        target = TicketStatus(to)
    except ValueError:
        msg = f"unknown ticket status {to!r}; one of {', '.join(TicketStatus)}"
        raise InvalidTicketChange(msg) from None
    current = TicketStatus(ticket.status)
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "none (ML reopens a closed claim)"
        msg = f"a ticket cannot go from {current} to {target}; from {current}: {allowed}"
        raise IllegalTransition(msg)
    return _next(ticket, now, status=target)


def assign_ticket(ticket: TicketSnapshot, assignee: str | None, now: datetime) -> TicketSnapshot:
    if assignee is not None and not (0 < len(assignee.strip()) <= 200):
        msg = "an assignee is a name of 1 to 200 characters (or null to unassign)"
        raise InvalidTicketChange(msg)
    return _next(ticket, now, assignee=assignee.strip() if assignee else None)


def add_note(ticket: TicketSnapshot, author: str, text: str, now: datetime) -> TicketSnapshot:
    if not text.strip() or len(text) > NOTE_MAX_CHARS:
        msg = f"a note has 1 to {NOTE_MAX_CHARS} characters"
        raise InvalidTicketChange(msg)
    if not author.strip():
        msg = "a note needs an author"
        raise InvalidTicketChange(msg)
    note = TicketNote(author=author.strip(), text=text, at=now)
    return _next(ticket, now, notes=(*ticket.notes, note))


def due_soon(ticket: TicketSnapshot, now: datetime, within_s: float) -> bool:
    """Whether ML expects the seller to act on the ticket's claim within ``within_s``."""
    return (
        ticket.status != TicketStatus.CLOSED
        and ticket.due_date is not None
        and ticket.action_responsible in (None, "seller")
        and (ticket.due_date - now).total_seconds() <= within_s
    )


def _next(ticket: TicketSnapshot, now: datetime, **changes: object) -> TicketSnapshot:
    return ticket.model_copy(update={**changes, "updated_at": now, "version": ticket.version + 1})


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
