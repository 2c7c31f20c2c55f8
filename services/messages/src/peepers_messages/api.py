"""The messages service's HTTP API: the Q&A inbox, conversations, tickets, probes.

Everything under ``/messages/sellers/{seller_id}/`` needs HTTP Basic service credentials
(``settings.service_credentials``); ``/healthz``, ``/readyz`` and ``/metrics`` do not.
Every entity is looked up as the seller's: another seller's id answers 404, for reads
and writes alike. Writes (answers, messages) need an ``Idempotency-Key`` header. Every
error is ``{"error": code, "detail": ...}`` (plus ``rule`` for a refused text and
``substatus`` for a blocked conversation).

=========================================================  ======================================
``GET  .../questions/inbox?offset&limit``                  unanswered questions, oldest first
``GET  .../questions?q&status&item_id&limit``              search (accent- and case-insensitive)
``GET  .../questions/{id}``                                one question
``POST .../questions/{id}/answer`` ``{"text"}``            answer it (once per question)
``GET  .../conversations``, ``.../conversations/{pack}``   conversations with unread counts
``POST .../conversations/{pack}/messages`` ``{"text"}``    message the buyer (once per key)
``GET  .../orders/{order}/timeline``                       the order's events, messages, claims
``GET  .../tickets?status&assignee&due_soon``              tickets, newest first
``GET  .../tickets/{claim}``                               one ticket
``POST .../tickets/{claim}/status`` ``{"status"}``         move it along the workflow
``POST .../tickets/{claim}/assignee`` ``{"assignee"}``     assign (null: unassign)
``POST .../tickets/{claim}/notes`` ``{"author","text"}``   add an internal note
``GET  .../stats``                                         unanswered, breached, open, due soon
=========================================================  ======================================
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, Final, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import BaseModel, ConfigDict, ValidationError

from peepers_common.errors import (
    InfrastructureError,
    InvalidQuery,
    MlApiError,
    ResourceBusy,
    TokenError,
)
from peepers_common.events import TicketSnapshot
from peepers_common.read_api import Readiness, read_api
from peepers_messages import commands, metrics
from peepers_messages.domain import (
    ConversationBlocked,
    InvalidAnswer,
    MessagesError,
    NotFound,
    TicketStatus,
    add_note,
    assign_ticket,
    due_soon,
    move_ticket,
)
from peepers_messages.handlers import Messages, change_ticket, order_timeline
from peepers_messages.settings import Settings

__all__ = ["create_api"]

log = logging.getLogger(__name__)

settings_key: Final = web.AppKey("settings_key", Settings)
deps_key: Final = web.AppKey("deps_key", Messages)
subs_key: Final = web.AppKey("subs_key", commands.Submissions)

_MAX_LIMIT: Final = 200


def _error(status: int, code: str, detail: str, **extra: Any) -> web.Response:
    return web.json_response(
        {"error": code, "detail": detail, **extra},
        status=status,
        headers={"Cache-Control": "no-store"},
    )


@web.middleware
async def messages_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The messages service's own errors; the common ones are `read_api`'s to answer."""
    try:
        return await handler(request)
    except InvalidAnswer as exc:
        return _error(exc.status, exc.code, str(exc), rule=exc.rule)
    except ConversationBlocked as exc:
        return _error(exc.status, exc.code, str(exc), substatus=exc.substatus)
    except MessagesError as exc:
        return _error(exc.status, exc.code, str(exc))
    except ResourceBusy as exc:
        return _error(409, "busy", str(exc))
    except InfrastructureError as exc:  # Kafka (Redis is read_api's CacheUnavailable)
        log.error("%s %s failed: %s", request.method, request.path, exc)
        return _error(503, "storage_unavailable", "Redis or Kafka is not answering; retry")
    except TokenError as exc:
        return _error(503, "seller_token_unavailable", str(exc))
    except MlApiError as exc:
        log.warning("%s %s: ML failed: %s", request.method, request.path, exc)
        return _error(502, "ml_unavailable", f"Mercado Libre did not answer as expected: {exc}")


# --- parameters ---------------------------------------------------------------------


def _int(request: web.Request, name: str) -> int:
    raw = request.match_info[name]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 20:
        msg = f"{name} must be a positive integer (got {raw!r})"
        raise InvalidQuery(msg)
    return int(raw)


def _query_int(request: web.Request, name: str, default: int, maximum: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or not 0 <= int(raw) <= maximum:
        msg = f"{name} must be an integer from 0 to {maximum} (got {raw!r})"
        raise InvalidQuery(msg)
    return int(raw)


class _Text(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str


class _Status(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: str


class _Assignee(BaseModel):
    model_config = ConfigDict(extra="forbid")
    assignee: str | None


class _Note(BaseModel):
    model_config = ConfigDict(extra="forbid")
    author: str
    text: str


M = TypeVar("M", bound=BaseModel)


async def _body(request: web.Request, model: type[M]) -> M:
    try:
        return model.model_validate_json(await request.read())
    except ValidationError as exc:
        fields = ", ".join(sorted(model.model_fields))
        msg = f"the body must be a JSON object with {fields}: {exc.errors()[0]['msg']}"
        raise InvalidQuery(msg) from None


def _idempotency_key(request: web.Request) -> str:
    key = request.headers.get("Idempotency-Key")
    if not key:
        msg = "an Idempotency-Key header is required: the same key never sends twice"
        raise InvalidQuery(msg)
    return key


# --- questions ----------------------------------------------------------------------


async def inbox(request: web.Request) -> web.StreamResponse:
    seller_id = _int(request, "seller_id")
    deps, settings = request.app[deps_key], request.app[settings_key]
    offset = _query_int(request, "offset", 0, 1_000_000)
    limit = _query_int(request, "limit", 50, _MAX_LIMIT)
    questions, total = await deps.mirror.inbox(seller_id, offset=offset, limit=limit)
    breach = deps.now() - timedelta(seconds=settings.answer_breach_after_s)
    return web.json_response(
        {
            "questions": [
                {**q.model_dump(mode="json"), "breached": q.date_created < breach}
                for q in questions
            ],
            "total": total,
        }
    )


async def search_questions(request: web.Request) -> web.StreamResponse:
    seller_id = _int(request, "seller_id")
    found = await request.app[deps_key].mirror.search_questions(
        seller_id,
        q=request.query.get("q"),
        status=request.query.get("status"),
        item_id=request.query.get("item_id"),
        limit=_query_int(request, "limit", 50, _MAX_LIMIT),
    )
    return web.json_response({"questions": [q.model_dump(mode="json") for q in found]})


async def get_question(request: web.Request) -> web.StreamResponse:
    seller_id, question_id = _int(request, "seller_id"), _int(request, "question_id")
    question = await request.app[deps_key].mirror.question(question_id)
    if question is None or question.seller_id != seller_id:
        msg = f"seller {seller_id} has no question {question_id}"
        raise NotFound(msg)
    return web.json_response(question.model_dump(mode="json"))


async def post_answer(request: web.Request) -> web.StreamResponse:
    seller_id, question_id = _int(request, "seller_id"), _int(request, "question_id")
    body = await _body(request, _Text)
    result = await commands.answer(
        seller_id,
        question_id,
        body.text,
        _idempotency_key(request),
        request.app[deps_key],
        request.app[subs_key],
    )
    return web.json_response(result)


# --- conversations ------------------------------------------------------------------


async def list_conversations(request: web.Request) -> web.StreamResponse:
    seller_id = _int(request, "seller_id")
    limit = _query_int(request, "limit", 50, _MAX_LIMIT)
    found = await request.app[deps_key].mirror.conversations(seller_id, limit=limit)
    return web.json_response({"conversations": [c.summary() for c in found]})


async def get_conversation(request: web.Request) -> web.StreamResponse:
    seller_id, pack_id = _int(request, "seller_id"), _int(request, "pack_id")
    conversation = await request.app[deps_key].mirror.conversation(pack_id)
    if conversation is None or conversation.seller_id != seller_id:
        msg = f"seller {seller_id} has no conversation in pack {pack_id}"
        raise NotFound(msg)
    return web.json_response(
        {
            **conversation.summary(),
            "messages": [m.model_dump(mode="json") for m in conversation.messages],
        }
    )


async def post_message(request: web.Request) -> web.StreamResponse:
    seller_id, pack_id = _int(request, "seller_id"), _int(request, "pack_id")
    body = await _body(request, _Text)
    result = await commands.send(
        seller_id,
        pack_id,
        body.text,
        _idempotency_key(request),
        request.app[deps_key],
        request.app[subs_key],
    )
    return web.json_response(result)


async def get_timeline(request: web.Request) -> web.StreamResponse:
    seller_id, order_id = _int(request, "seller_id"), _int(request, "order_id")
    deps = request.app[deps_key]
    owner = await deps.mirror.order_seller(order_id)
    if owner is not None and owner != seller_id:
        msg = f"seller {seller_id} has no order {order_id}"
        raise NotFound(msg)
    entries = await order_timeline(order_id, deps)
    return web.json_response(
        {"order_id": order_id, "entries": [e.model_dump(mode="json") for e in entries]}
    )


# --- tickets ------------------------------------------------------------------------


def _ticket_json(ticket: TicketSnapshot, request: web.Request) -> dict[str, Any]:
    deps, settings = request.app[deps_key], request.app[settings_key]
    return {
        **ticket.model_dump(mode="json"),
        "due_soon": due_soon(ticket, deps.now(), settings.ticket_due_within_s),
    }


async def list_tickets(request: web.Request) -> web.StreamResponse:
    seller_id = _int(request, "seller_id")
    status = request.query.get("status")
    if status is not None and status not in set(TicketStatus):
        msg = f"status must be one of {', '.join(TicketStatus)}"
        raise InvalidQuery(msg)
    assignee = request.query.get("assignee")
    only_due = request.query.get("due_soon") in ("1", "true")
    found = [
        _ticket_json(t, request)
        for t in await request.app[deps_key].tickets.of_seller(seller_id)
        if (status is None or t.status == status) and (assignee is None or t.assignee == assignee)
    ]
    if only_due:
        found = [t for t in found if t["due_soon"]]
    return web.json_response({"tickets": found, "total": len(found)})


async def get_ticket(request: web.Request) -> web.StreamResponse:
    seller_id, claim_id = _int(request, "seller_id"), _int(request, "claim_id")
    deps = request.app[deps_key]
    ticket = await deps.tickets.get(claim_id)
    if ticket is None and await deps.ticket_log.verify():
        ticket = await deps.tickets.get(claim_id)
    if ticket is None or ticket.seller_id != seller_id:
        msg = f"seller {seller_id} has no ticket for claim {claim_id}"
        raise NotFound(msg)
    return web.json_response(_ticket_json(ticket, request))


async def post_ticket_status(request: web.Request) -> web.StreamResponse:
    seller_id, claim_id = _int(request, "seller_id"), _int(request, "claim_id")
    body = await _body(request, _Status)
    ticket = await change_ticket(
        claim_id,
        seller_id,
        lambda t, now: move_ticket(t, body.status, now),
        request.app[deps_key],
    )
    return web.json_response(_ticket_json(ticket, request))


async def post_ticket_assignee(request: web.Request) -> web.StreamResponse:
    seller_id, claim_id = _int(request, "seller_id"), _int(request, "claim_id")
    body = await _body(request, _Assignee)
    ticket = await change_ticket(
        claim_id,
        seller_id,
        lambda t, now: assign_ticket(t, body.assignee, now),
        request.app[deps_key],
    )
    return web.json_response(_ticket_json(ticket, request))


async def post_ticket_note(request: web.Request) -> web.StreamResponse:
    seller_id, claim_id = _int(request, "seller_id"), _int(request, "claim_id")
    body = await _body(request, _Note)
    ticket = await change_ticket(
        claim_id,
        seller_id,
        lambda t, now: add_note(t, body.author, body.text, now),
        request.app[deps_key],
    )
    return web.json_response(_ticket_json(ticket, request))


# --- stats and probes ---------------------------------------------------------------


async def seller_stats(deps: Messages, settings: Settings, seller_id: int) -> dict[str, int]:
    """The seller's unanswered and breached questions, open and due-soon tickets."""
    now = deps.now()
    unanswered, breached = await deps.mirror.question_counts(
        seller_id, now - timedelta(seconds=settings.answer_breach_after_s)
    )
    tickets = await deps.tickets.of_seller(seller_id)
    open_tickets = [t for t in tickets if t.status != TicketStatus.CLOSED]
    soon = sum(1 for t in open_tickets if due_soon(t, now, settings.ticket_due_within_s))
    label = str(seller_id)
    metrics.UNANSWERED.labels(label).set(unanswered)
    metrics.BREACHED.labels(label).set(breached)
    metrics.OPEN_TICKETS.labels(label).set(len(open_tickets))
    metrics.DUE_SOON.labels(label).set(soon)
    return {
        "unanswered_questions": unanswered,
        "breached_questions": breached,
        "open_tickets": len(open_tickets),
        "tickets_due_soon": soon,
    }


async def get_stats(request: web.Request) -> web.StreamResponse:
    seller_id = _int(request, "seller_id")
    stats = await seller_stats(request.app[deps_key], request.app[settings_key], seller_id)
    return web.json_response({"seller_id": seller_id, **stats})


def create_api(
    settings: Settings, *, deps: Messages, subs: commands.Submissions, ready: Readiness
) -> web.Application:
    """The API over ``deps``; ``ready`` says whether the service may take traffic.

    Errors, service credentials and the probes are `peepers_common.read_api`'s.
    """
    app = read_api(
        "messages",
        credentials=settings.service_credentials,
        ready=ready,
        middlewares=[messages_errors],
    )
    app[settings_key] = settings
    app[deps_key] = deps
    app[subs_key] = subs
    base = "/messages/sellers/{seller_id}"
    r = app.router
    r.add_get(f"{base}/questions/inbox", inbox)
    r.add_get(f"{base}/questions", search_questions)
    r.add_get(f"{base}/questions/{{question_id}}", get_question)
    r.add_post(f"{base}/questions/{{question_id}}/answer", post_answer)
    r.add_get(f"{base}/conversations", list_conversations)
    r.add_get(f"{base}/conversations/{{pack_id}}", get_conversation)
    r.add_post(f"{base}/conversations/{{pack_id}}/messages", post_message)
    r.add_get(f"{base}/orders/{{order_id}}/timeline", get_timeline)
    r.add_get(f"{base}/tickets", list_tickets)
    r.add_get(f"{base}/tickets/{{claim_id}}", get_ticket)
    r.add_post(f"{base}/tickets/{{claim_id}}/status", post_ticket_status)
    r.add_post(f"{base}/tickets/{{claim_id}}/assignee", post_ticket_assignee)
    r.add_post(f"{base}/tickets/{{claim_id}}/notes", post_ticket_note)
    r.add_get(f"{base}/stats", get_stats)
    return app
