"""The pages: read the session's seller, ask the read APIs, render a template.

A part whose service is down renders as "service not available" and the rest of the
page still works. Every id from a URL is asked for under the session's seller and
checked again by the adapters, so another seller's id is a 404, never their data.
An htmx request (``HX-Request``) gets only the part it refreshes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Final, TypeVar
from uuid import uuid4
from zoneinfo import ZoneInfo

import jinja2
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp_sse import EventSourceResponse, sse_response
from redis.exceptions import RedisError

from peepers_auth.errors import AuthError
from peepers_auth.web import chart, metrics
from peepers_auth.web.i18n import Locale
from peepers_auth.web.live import CLOSING, RELOAD, LiveEvent
from peepers_auth.web.ports import (
    ANSWER_MAX_CHARS,
    MESSAGE_MAX_CHARS,
    AnswerRefused,
    CatalogPage,
    Conversation,
    OrderFilter,
    OrderList,
    Readers,
    SellerStatus,
    ServiceNotAvailable,
    Ticket,
    TicketChange,
)
from peepers_auth.web.security import (
    CSRF_HEADER,
    SESSION_COOKIE,
    hub_key,
    locale_key,
    session_id_key,
    session_key,
    sessions_key,
    web_settings_key,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

templates_key: Final = web.AppKey("templates_key", jinja2.Environment)
readers_key: Final = web.AppKey("readers_key", Readers)
redis_key: Final = web.AppKey("web_redis_key", aioredis.Redis)
feed_key: Final = web.AppKey("feed_key", asyncio.Event)

# The messages service's ticket workflow (it refuses a move the workflow does not allow).
TICKET_STATUSES: Final = ("open", "in_progress", "waiting_buyer", "resolved", "closed")
ORDER_STATES: Final = (
    "created",
    "paid",
    "shipped",
    "delivered",
    "not_delivered",
    "cancelled",
    "refunded",
    "partially_refunded",
)
_NOTE_MAX_CHARS: Final = 2000


class PageNotFound(AuthError):
    status = 404
    code = "not_found"
    title = "Not found"


class Unavailable:
    """A part of a page whose service did not answer."""

    def __init__(self, service: str) -> None:
        self.service = service


async def attempt(work: Awaitable[T]) -> T | Unavailable:
    try:
        return await work
    except ServiceNotAvailable as exc:
        log.warning("part of a page not available: %s", exc)
        metrics.UNAVAILABLE.labels(exc.service).inc()
        return Unavailable(exc.service)


def _readers(request: web.Request) -> Readers:
    return request.app[readers_key]


def render(request: web.Request, name: str, **context: Any) -> str:
    settings = request.app[web_settings_key]
    locale = context.pop("locale", None) or request[locale_key]
    session = request.get(session_key)
    base = {
        "seller_id": session.seller_id if session else None,
        "csrf_token": session.csrf_token.get_secret_value() if session else "",
        "csrf_header": CSRF_HEADER,
        "auth_base_url": settings.auth_base_url,
        "language": locale.language,
        "path": request.path,
        **locale.filters(),
    }
    template = request.app[templates_key].get_template(name)
    return template.render(**base, **context)


def _redirect(location: str) -> web.Response:
    # Returned, not raised: a response is not an error (and keeps cookies set on it).
    return web.Response(status=303, headers={"Location": location})


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html")


def _int_id(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19:
        raise PageNotFound(raw)
    return int(raw)


def _status(request: web.Request) -> SellerStatus:
    # A session exists only after a successful login, so "connected" until the sellers
    # topic says otherwise.
    seller = request[session_key].seller_id
    return request.app[hub_key].statuses.get(seller, SellerStatus("connected"))


# --------------------------------------------------------------------------- overview


def _today(request: web.Request) -> date:
    return datetime.now(request[locale_key].zone).date()


async def overview(request: web.Request) -> web.StreamResponse:
    seller = request[session_key].seller_id
    readers = _readers(request)
    today = _today(request)
    sales, questions, conversations, tickets, ready = await asyncio.gather(
        attempt(readers.orders.sales(seller, today - timedelta(days=29), today)),
        attempt(readers.messages.unanswered_count(seller)),
        attempt(readers.messages.conversations(seller)),
        attempt(readers.messages.tickets(seller)),
        _ready(readers),
    )
    locale = request[locale_key]
    figures: dict[str, Any] | Unavailable
    if isinstance(sales, Unavailable):
        figures = sales
    else:
        by_day = {d.day: d for d in sales}
        monday = today - timedelta(days=today.weekday())
        week = [d for d in sales if monday <= d.day <= today]
        currency = locale.currency
        figures = {
            "today_orders": by_day[today].orders if today in by_day else 0,
            "today_revenue": by_day[today].revenue.get(currency, Decimal(0))
            if today in by_day
            else Decimal(0),
            "week_orders": sum(d.orders for d in week),
            "week_revenue": sum((d.revenue.get(currency, Decimal(0)) for d in week), Decimal(0)),
            "chart": chart.build(sales, today, currency),
        }
    open_tickets: dict[str, Any] | Unavailable
    if isinstance(tickets, Unavailable):
        open_tickets = tickets
    else:
        pending = [t for t in tickets if t.status not in ("resolved", "closed")]
        dues = sorted(t.due_date for t in pending if t.due_date is not None)
        open_tickets = {"count": len(pending), "nearest_due": dues[0] if dues else None}
    return _html(
        render(
            request,
            "overview.html",
            status=_status(request),
            figures=figures,
            questions=questions,
            # Over the latest conversations the list shows (the messages API's first 50).
            unread=conversations
            if isinstance(conversations, Unavailable)
            else sum(c.unread for c in conversations),
            tickets=open_tickets,
            ready=ready,
        )
    )


async def _ready(readers: Readers) -> dict[str, bool]:
    names = list(readers.ready)
    answers = await asyncio.gather(*(readers.ready[n].ready() for n in names))
    return dict(zip(names, answers, strict=True))


# --------------------------------------------------------------------------- orders


def _order_filter(query: Mapping[str, str], zone: ZoneInfo) -> tuple[OrderFilter, str | None]:
    """The filter a query asks for, or an empty one and what is wrong with it.

    Days are the seller's (their site's time zone): ``to`` includes the whole day.
    """
    try:
        buyer = query.get("buyer") or None
        first = date.fromisoformat(query["from"]) if query.get("from") else None
        last = date.fromisoformat(query["to"]) if query.get("to") else None
        made = OrderFilter(
            state=query.get("state") if query.get("state") in ORDER_STATES else None,
            buyer_id=int(buyer) if buyer else None,
            created_from=datetime.combine(first, time(0), zone) if first else None,
            created_to=datetime.combine(last, time.max, zone) if last else None,
            cursor=query.get("cursor") or None,
        )
        if made.buyer_id is not None and made.buyer_id < 0:
            raise ValueError(buyer)
    except ValueError:
        return OrderFilter(), "buyer is a number; dates are YYYY-MM-DD"
    if made.created_from and made.created_to and made.created_from > made.created_to:
        return OrderFilter(), "the start date is after the end date"
    return made, None


_ORDER_PARAMS: Final = ("state", "buyer", "from", "to")


async def orders(request: web.Request) -> web.StreamResponse:
    seller = request[session_key].seller_id
    query, problem = _order_filter(request.query, request[locale_key].zone)
    found: OrderList | Unavailable | None = None
    if problem is None:
        try:
            found = await attempt(_readers(request).orders.search(seller, query))
        except ValueError as exc:  # the orders API refused the query (a stale cursor...)
            problem = str(exc)
    return _html(
        render(
            request,
            "orders.html",
            query=query,
            problem=problem,
            found=found,
            states=ORDER_STATES,
            form=dict(request.query),
            first_page={k: v for k, v in request.query.items() if k in _ORDER_PARAMS},
        )
    )


async def order(request: web.Request) -> web.StreamResponse:
    seller = request[session_key].seller_id
    order_id = _int_id(request.match_info["order_id"])
    readers = _readers(request)
    detail, thread = await asyncio.gather(
        readers.orders.get(seller, order_id),
        attempt(readers.messages.order_thread(seller, order_id)),
    )
    if detail is None:
        raise PageNotFound(str(order_id))
    steps = list(detail.timeline)
    if not isinstance(thread, Unavailable):
        steps += thread
    steps.sort(key=lambda s: s.at)
    return _html(
        render(
            request,
            "order.html",
            order=detail.order,
            steps=steps,
            messages=thread if isinstance(thread, Unavailable) else None,
        )
    )


# --------------------------------------------------------------------------- questions


async def questions(request: web.Request) -> web.StreamResponse:
    seller = request[session_key].seller_id
    found = await attempt(_readers(request).messages.unanswered(seller))
    return _html(
        render(request, "questions.html", found=found, limit=ANSWER_MAX_CHARS, errors={}, drafts={})
    )


def _text_problem(text: str, limit: int, empty: str, locale: Locale) -> tuple[str, str] | None:
    """Why a text cannot be sent as it is (code, words), checked before asking ML."""
    if not text.strip():
        return "empty", locale.text(empty)
    if len(text) > limit:
        too_long = locale.text("At most {limit} characters ({count} now).")
        return "too_long", too_long.format(limit=limit, count=len(text))
    return None


async def answer(request: web.Request) -> web.StreamResponse:
    seller = request[session_key].seller_id
    question_id = _int_id(request.match_info["question_id"])
    form = await request.post()
    text = str(form.get("text", ""))
    problem = _text_problem(text, ANSWER_MAX_CHARS, "Write an answer first.", request[locale_key])
    answered = False
    if problem is None:
        try:
            answered = await _readers(request).messages.answer(seller, question_id, text)
        except AnswerRefused as exc:
            problem = exc.code, str(exc)
        if problem is None and not answered:
            raise PageNotFound(str(question_id))
    context = {
        "question_id": question_id,
        "answered": answered,
        "problem": problem,
        "text": text,
        "limit": ANSWER_MAX_CHARS,
    }
    status = 422 if problem else 200
    if request.headers.get("HX-Request") == "true":
        return _html(render(request, "_answer.html", **context), status)
    if problem is None:
        return _redirect("/app/questions")
    found = await attempt(_readers(request).messages.unanswered(seller))
    return _html(
        render(
            request,
            "questions.html",
            found=found,
            limit=ANSWER_MAX_CHARS,
            errors={question_id: problem},
            drafts={question_id: text},
        ),
        status,
    )


# --------------------------------------------------------------------------- conversations


async def conversations(request: web.Request) -> web.StreamResponse:
    seller = request[session_key].seller_id
    found = await attempt(_readers(request).messages.conversations(seller))
    return _html(render(request, "conversations.html", found=found))


def _conversation_page(
    request: web.Request,
    pack_id: int,
    found: Conversation | Unavailable,
    form: Mapping[str, Any],
) -> str:
    return render(
        request,
        "conversation.html",
        pack_id=pack_id,
        conversation=found,
        limit=MESSAGE_MAX_CHARS,
        **form,
    )


_MESSAGE_REFUSALS: Final = {
    "blocked": "This conversation is blocked: Mercado Livre takes no message into it.",
}


def _message_form(
    *, text: str = "", problem: tuple[str, str] | None = None, sent: bool = False
) -> dict[str, Any]:
    # A new nonce per form shown: its submissions are one message (read_apis.send).
    return {"text": text, "problem": problem, "sent": sent, "nonce": uuid4().hex}


async def conversation(request: web.Request) -> web.StreamResponse:
    seller = request[session_key].seller_id
    pack_id = _int_id(request.match_info["pack_id"])
    found = await attempt(_readers(request).messages.conversation(seller, pack_id))
    if found is None:
        raise PageNotFound(str(pack_id))
    return _html(_conversation_page(request, pack_id, found, _message_form()))


async def send_message(request: web.Request) -> web.StreamResponse:
    seller = request[session_key].seller_id
    pack_id = _int_id(request.match_info["pack_id"])
    form = await request.post()
    text = str(form.get("text", ""))
    # The form's nonce (hex, from _message_form); a form without one sends without dedup.
    nonce = str(form.get("nonce", ""))[:64] or uuid4().hex
    messages = _readers(request).messages
    problem = _text_problem(text, MESSAGE_MAX_CHARS, "Write a message first.", request[locale_key])
    if problem is None:
        try:
            sent = await messages.send(seller, pack_id, text, nonce=nonce)
        except AnswerRefused as exc:
            # In the seller's words, with the service's detail (the substatus says why).
            lead = _MESSAGE_REFUSALS.get(exc.code)
            said = f"{request[locale_key].text(lead)} ({exc})" if lead else str(exc)
            problem = exc.code, said
        else:
            if not sent:
                raise PageNotFound(str(pack_id))
    htmx = request.headers.get("HX-Request") == "true"
    if problem is None:
        if not htmx:
            return _redirect(f"/app/conversations/{pack_id}")
        # The thread refreshes itself (hx-trigger "peepers:sent from:body").
        part = render(request, "_message.html", pack_id=pack_id, limit=MESSAGE_MAX_CHARS,
                      **_message_form(sent=True))  # fmt: skip
        response = _html(part)
        response.headers["HX-Trigger"] = "peepers:sent"
        return response
    # Refused: the text stays in the field, the reason beside it, a fresh nonce (the
    # corrected text is another message).
    kept = _message_form(text=text, problem=problem)
    if htmx:
        part = render(request, "_message.html", pack_id=pack_id, limit=MESSAGE_MAX_CHARS, **kept)
        return _html(part, 422)
    found = await attempt(messages.conversation(seller, pack_id))
    if found is None:
        raise PageNotFound(str(pack_id))
    return _html(_conversation_page(request, pack_id, found, kept), 422)


# --------------------------------------------------------------------------- tickets


async def tickets(request: web.Request) -> web.StreamResponse:
    seller = request[session_key].seller_id
    wanted = request.query.get("status")
    status = wanted if wanted in TICKET_STATUSES else None
    found = await attempt(_readers(request).messages.tickets(seller, status=status))
    return _html(
        render(request, "tickets.html", found=found, statuses=TICKET_STATUSES, status=status)
    )


async def ticket(request: web.Request) -> web.StreamResponse:
    seller = request[session_key].seller_id
    claim_id = _int_id(request.match_info["claim_id"])
    found = await _readers(request).messages.ticket(seller, claim_id)
    if found is None:
        raise PageNotFound(str(claim_id))
    return _html(
        render(request, "ticket.html", ticket=found, statuses=TICKET_STATUSES, problem=None)
    )


def _ticket_change(form: Mapping[str, Any], current: Ticket, author: str) -> TicketChange:
    """What the form changes (an unchanged field is no change); ValueError if it cannot."""
    status = str(form.get("status", "")) or None
    assignee = str(form.get("assignee", "")).strip() or None
    note = str(form.get("note", "")).strip() or None
    if status is not None and status not in TICKET_STATUSES:
        msg = "unknown status"
        raise ValueError(msg)
    if assignee is not None and len(assignee) > 100:
        msg = "the assignee is at most 100 characters"
        raise ValueError(msg)
    if note is not None and len(note) > _NOTE_MAX_CHARS:
        msg = f"a note is at most {_NOTE_MAX_CHARS} characters"
        raise ValueError(msg)
    return TicketChange(
        status=status if status != current.status else None,
        assignee=assignee if assignee != current.assignee else None,
        # A field emptied by the seller takes the ticket away from whoever had it.
        unassign="assignee" in form and assignee is None and current.assignee is not None,
        note=note,
        author=author,
    )


async def change_ticket(request: web.Request) -> web.StreamResponse:
    seller = request[session_key].seller_id
    claim_id = _int_id(request.match_info["claim_id"])
    form = await request.post()
    messages = _readers(request).messages
    current = await messages.ticket(seller, claim_id)
    if current is None:
        raise PageNotFound(str(claim_id))
    try:
        change = _ticket_change(form, current, f"seller {seller}")
        changed = await messages.change_ticket(seller, claim_id, change)
    except ValueError as exc:
        page = render(
            request, "ticket.html", ticket=current, statuses=TICKET_STATUSES, problem=str(exc)
        )
        return _html(page, 422)
    if changed is None:
        raise PageNotFound(str(claim_id))
    return _redirect(f"/app/tickets/{claim_id}")


# --------------------------------------------------------------------------- catalog

_CATALOG_PARAMS: Final = ("q", "status", "category", "price_min", "price_max", "cursor")


async def catalog(request: web.Request) -> web.StreamResponse:
    seller = request[session_key].seller_id
    params = {k: request.query[k] for k in _CATALOG_PARAMS if request.query.get(k)}
    params["limit"] = "25"
    problem = None
    found: CatalogPage | Unavailable | None = None
    try:
        found = await attempt(_readers(request).catalog.search(seller, params))
    except ValueError as exc:  # the catalog refused the query: say why beside the form
        problem = str(exc)
    form = {k: v for k, v in params.items() if k not in ("limit", "cursor")}
    return _html(render(request, "catalog.html", found=found, problem=problem, form=form))


# --------------------------------------------------------------------------- live


async def live(request: web.Request) -> web.StreamResponse:
    """Server-sent events of the session's seller; ``Last-Event-ID`` resumes."""
    seller = request[session_key].seller_id
    settings = request.app[web_settings_key]
    hub = request.app[hub_key]
    feed = request.app.get(feed_key)
    if feed is not None and not feed.is_set():
        # A page reconnecting to a replica that is still reading its replay window waits
        # for it (Kubernetes sends no traffic before /readyz, but a probe can lag): its
        # Last-Event-ID may be in what is still to be read. Past the wait it reloads.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(feed.wait(), settings.live_catch_up_wait_s)
    async with (
        hub.follow(seller, request.headers.get("Last-Event-ID")) as (missed, queue),
        sse_response(request, ping_interval=settings.live_heartbeat_s) as stream,
    ):
        metrics.OPEN_PAGES.set(hub.open_pages())
        # A page closed mid-write is a page gone: its stream just ends.
        with contextlib.suppress(ConnectionResetError):
            await _stream(stream, missed, queue, settings.live_heartbeat_s)
    metrics.OPEN_PAGES.set(hub.open_pages())
    return stream


async def _stream(
    stream: EventSourceResponse,
    missed: list[LiveEvent],
    queue: asyncio.Queue[LiveEvent],
    heartbeat_s: float,
) -> None:
    for event in missed:
        await _send(stream, event)
    while stream.is_connected():
        try:
            # Wake up now and then: a page that went away is noticed without a write.
            event = await asyncio.wait_for(queue.get(), heartbeat_s)
        except TimeoutError:
            continue
        if event.type == CLOSING:
            return
        await _send(stream, event)
        if event.type == RELOAD:
            return


async def _send(stream: EventSourceResponse, event: LiveEvent) -> None:
    if event.type == RELOAD:
        metrics.RELOADS.inc()
        await stream.send(event.data(), event=RELOAD, retry=2000)
    else:
        metrics.LIVE_EVENTS.labels(event.part).inc()
        await stream.send(event.data(), id=event.id, event=event.part, retry=2000)


# --------------------------------------------------------------------------- operations


async def logout(request: web.Request) -> web.StreamResponse:
    await request.app[sessions_key].delete(request[session_id_key])
    settings = request.app[web_settings_key]
    response = _redirect(f"{settings.auth_base_url}/auth/")
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


async def healthz(_request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.StreamResponse:
    """Ready when Redis answers (sessions) and the live feed has caught up once."""
    redis = request.app.get(redis_key)
    if redis is not None:
        try:
            await redis.ping()
        except RedisError:
            return web.json_response({"status": "redis unavailable"}, status=503)
    feed = request.app.get(feed_key)
    if feed is not None and not feed.is_set():
        return web.json_response({"status": "live feed catching up"}, status=503)
    return web.json_response({"status": "ready"})


async def root(_request: web.Request) -> web.StreamResponse:
    return _redirect("/app/")


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/", root)
    r.add_get("/app/", overview)
    r.add_get("/app/orders", orders)
    r.add_get("/app/orders/{order_id}", order)
    r.add_get("/app/questions", questions)
    r.add_post("/app/questions/{question_id}/answer", answer)
    r.add_get("/app/conversations", conversations)
    r.add_get("/app/conversations/{pack_id}", conversation)
    r.add_post("/app/conversations/{pack_id}/messages", send_message)
    r.add_get("/app/tickets", tickets)
    r.add_get("/app/tickets/{claim_id}", ticket)
    r.add_post("/app/tickets/{claim_id}", change_ticket)
    r.add_get("/app/catalog", catalog)
    r.add_get("/app/live", live)
    r.add_post("/app/logout", logout)
    r.add_get("/healthz", healthz)
    r.add_get("/readyz", readyz)
