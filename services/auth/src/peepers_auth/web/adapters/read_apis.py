"""The other services' HTTP read APIs, called with the web process's own service credential.

Every call is scoped to the session's seller (``/sellers/{seller_id}/...``), and every
answer is checked again here: a record whose ``seller_id`` is not the session's is
treated as absent (404 on the page), whatever the API said. aiohttp errors, timeouts and
5xx become `ServiceNotAvailable`; the pages show that part as "service not available".

Paths (docs/web.md lists them with what each page needs):

- catalog: ``GET /catalog/sellers/{id}/items`` (search with facets), ``/readyz``;
- orders: ``GET /orders/sellers/{id}/orders``, ``GET /orders/orders/{order_id}`` (by id
  alone: its ``seller_id`` is checked here), ``.../analytics?from=&to=``;
- messages: ``GET /messages/sellers/{id}/questions/inbox``, ``POST .../questions/{qid}/answer``
  (with an ``Idempotency-Key``), ``GET .../conversations``, ``GET .../conversations/{pack}``,
  ``POST .../conversations/{pack}/messages`` (with an ``Idempotency-Key``),
  ``GET .../tickets``, ``GET .../tickets/{claim}``,
  ``POST .../tickets/{claim}/status|assignee|notes``, ``GET .../orders/{order_id}/timeline``,
  ``GET .../stats`` (the unanswered count).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any, Final, NoReturn

import aiohttp
from pydantic import TypeAdapter, ValidationError

from peepers_auth.web.ports import (
    AnswerRefused,
    CatalogPage,
    Conversation,
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
    TimelineStep,
)
from peepers_auth.web.settings import ReadApi
from peepers_common.events import ItemSnapshot

_ITEMS: Final = TypeAdapter(list[ItemSnapshot])
_ORDERS: Final = TypeAdapter(list[OrderView])
_DAYS: Final = TypeAdapter(list[DaySales])
_QUESTIONS: Final = TypeAdapter(list[Question])
_TICKETS: Final = TypeAdapter(list[Ticket])
_STEPS: Final = TypeAdapter(list[TimelineStep])
_CONVERSATIONS: Final = TypeAdapter(list[ConversationSummary])
_CONVERSATION: Final = TypeAdapter(Conversation)


class ReadApiClient:
    """One service's read API: base URL, credential, timeout and error translation."""

    def __init__(
        self,
        service: str,
        api: ReadApi | None,
        session: aiohttp.ClientSession,
        authorization: str,
    ) -> None:
        self.service = service
        self._api = api
        self._session = session
        self._headers = {"Authorization": authorization}

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Any]:
        """(status, decoded JSON body) of a 2xx or 4xx answer; anything else is unavailable."""
        if self._api is None:
            raise ServiceNotAvailable(self.service, "not configured")
        url = self._api.base_url.rstrip("/") + path
        timeout = aiohttp.ClientTimeout(total=self._api.timeout_s)
        try:
            async with self._session.request(
                method,
                url,
                params=params,
                json=json,
                headers={**self._headers, **(headers or {})},
                timeout=timeout,
            ) as response:
                if response.status >= 500 or response.status in (401, 403):
                    # 401/403: our credential is wrong, which the seller cannot fix either.
                    msg = f"answered {response.status}"
                    raise ServiceNotAvailable(self.service, msg)
                body = await response.json(content_type=None) if response.status != 204 else {}
                return response.status, body
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ServiceNotAvailable(self.service, exc.__class__.__name__) from exc

    def unexpected(self, what: str, status: int) -> NoReturn:
        msg = f"{what} answered {status}"
        raise ServiceNotAvailable(self.service, msg)

    async def ready(self) -> bool:
        try:
            status, _ = await self.call("GET", "/readyz")
        except ServiceNotAvailable:
            return False
        return status == 200


def _parse(service: str, adapter: TypeAdapter[Any], value: object) -> Any:
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        msg = f"answered a body the pages cannot read ({exc.error_count()} errors)"
        raise ServiceNotAvailable(service, msg) from exc


def _detail(body: object) -> str:
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("message") or body.get("error") or "")
    return ""


class HttpCatalog:
    def __init__(self, client: ReadApiClient) -> None:
        self._client = client

    async def search(self, seller_id: int, params: Mapping[str, str]) -> CatalogPage:
        status, body = await self._client.call(
            "GET", f"/catalog/sellers/{seller_id}/items", params=params
        )
        if status == 400:
            raise ValueError(_detail(body))
        if status != 200 or not isinstance(body, dict):
            self._client.unexpected("search", status)
        items = [
            i for i in _parse("catalog", _ITEMS, body.get("items", [])) if i.seller_id == seller_id
        ]
        return CatalogPage(
            items=items,
            total=int(body.get("total", len(items))),
            next_cursor=body.get("next_cursor"),
            facets=body.get("facets") or {},
        )

    async def ready(self) -> bool:
        return await self._client.ready()


class HttpOrders:
    def __init__(self, client: ReadApiClient) -> None:
        self._client = client

    async def search(self, seller_id: int, query: OrderFilter) -> OrderList:
        params = {"limit": str(query.limit)}
        for name, value in (
            ("state", query.state),
            ("buyer", query.buyer_id),
            ("from", query.created_from.isoformat() if query.created_from else None),
            ("to", query.created_to.isoformat() if query.created_to else None),
            ("cursor", query.cursor),
        ):
            if value is not None:
                params[name] = str(value)
        status, body = await self._client.call(
            "GET", f"/orders/sellers/{seller_id}/orders", params=params
        )
        if status == 400:
            raise ValueError(_detail(body))
        if status != 200 or not isinstance(body, dict):
            self._client.unexpected("search", status)
        orders = _parse(self._client.service, _ORDERS, body.get("orders", []))
        return OrderList(
            [o for o in orders if o.seller_id == seller_id], next_cursor=body.get("next_cursor")
        )

    async def get(self, seller_id: int, order_id: int) -> OrderDetail | None:
        # The orders API looks an order up by id alone: whose it is is checked here.
        status, body = await self._client.call("GET", f"/orders/orders/{order_id}")
        if status == 404:
            return None
        if status != 200 or not isinstance(body, dict):
            self._client.unexpected("order", status)
        order: OrderView = _parse(self._client.service, TypeAdapter(OrderView), body)
        if order.seller_id != seller_id:
            return None
        steps = [
            {"at": entry.get("at"), "kind": "order", "text": entry.get("state", "")}
            for entry in body.get("timeline") or []
            if isinstance(entry, dict)
        ]
        return OrderDetail(order=order, timeline=tuple(_parse(self._client.service, _STEPS, steps)))

    async def sales(self, seller_id: int, first: date, last: date) -> list[DaySales]:
        status, body = await self._client.call(
            "GET",
            f"/orders/sellers/{seller_id}/analytics",
            params={"from": first.isoformat(), "to": last.isoformat()},
        )
        if status != 200 or not isinstance(body, dict):
            self._client.unexpected("analytics", status)
        days: list[DaySales] = _parse(self._client.service, _DAYS, body.get("days", []))
        return days


# The messages service's refusals of an answer or a message, as the page names them.
_ANSWER_CODES: Final = {
    "not_empty": "empty",
    "max_length": "too_long",
    "question_not_unanswered": "already_answered",
    "conversation_blocked": "blocked",
}


class HttpMessages:
    def __init__(self, client: ReadApiClient) -> None:
        self._client = client

    def _path(self, seller_id: int, rest: str) -> str:
        return f"/messages/sellers/{seller_id}/{rest}"

    async def unanswered(self, seller_id: int) -> list[Question]:
        status, body = await self._client.call(
            "GET", self._path(seller_id, "questions/inbox"), params={"limit": "200"}
        )
        if status != 200 or not isinstance(body, dict):
            self._client.unexpected("inbox", status)
        questions: list[Question] = _parse(
            self._client.service, _QUESTIONS, body.get("questions", [])
        )
        mine = [q for q in questions if q.seller_id == seller_id and q.status == "UNANSWERED"]
        return sorted(mine, key=lambda q: q.date_created)

    async def unanswered_count(self, seller_id: int) -> int:
        status, body = await self._client.call("GET", self._path(seller_id, "stats"))
        if status != 200 or not isinstance(body, dict):
            self._client.unexpected("stats", status)
        try:
            return int(body["unanswered_questions"])
        except (KeyError, TypeError, ValueError):
            self._client.unexpected("stats without unanswered_questions", status)

    async def answer(self, seller_id: int, question_id: int, text: str) -> bool:
        # The same text for the same question is the same submission: a double click or a
        # resent form answers once.
        key = hashlib.sha256(f"{seller_id}:{question_id}:{text}".encode()).hexdigest()
        status, body = await self._client.call(
            "POST",
            self._path(seller_id, f"questions/{question_id}/answer"),
            json={"text": text},
            headers={"Idempotency-Key": key},
        )
        return _sent(status, body)

    async def conversations(self, seller_id: int) -> list[ConversationSummary]:
        status, body = await self._client.call(
            "GET", self._path(seller_id, "conversations"), params={"limit": "50"}
        )
        if status != 200 or not isinstance(body, dict):
            self._client.unexpected("conversations", status)
        found: list[ConversationSummary] = _parse(
            self._client.service, _CONVERSATIONS, body.get("conversations", [])
        )
        mine = [c for c in found if c.seller_id == seller_id]
        return sorted(mine, key=_latest, reverse=True)

    async def conversation(self, seller_id: int, pack_id: int) -> Conversation | None:
        status, body = await self._client.call(
            "GET", self._path(seller_id, f"conversations/{pack_id}")
        )
        if status == 404:
            return None
        if status != 200:
            self._client.unexpected("conversation", status)
        found: Conversation = _parse(self._client.service, _CONVERSATION, body)
        if found.seller_id != seller_id:
            return None
        ordered = sorted(found.messages, key=lambda m: m.created_at or _EPOCH)
        return found.model_copy(update={"messages": tuple(ordered)})

    async def send(self, seller_id: int, pack_id: int, text: str, *, nonce: str) -> bool:
        # One form (its nonce) with one text is one message: a double click or a resent
        # form sends it once, while the same words sent again from a new form are sent.
        key = hashlib.sha256(f"{seller_id}:{pack_id}:{nonce}:{text}".encode()).hexdigest()
        status, body = await self._client.call(
            "POST",
            self._path(seller_id, f"conversations/{pack_id}/messages"),
            json={"text": text},
            headers={"Idempotency-Key": key},
        )
        return _sent(status, body)

    async def tickets(self, seller_id: int, *, status: str | None = None) -> list[Ticket]:
        params = {"status": status} if status else {}
        code, body = await self._client.call("GET", self._path(seller_id, "tickets"), params=params)
        if code != 200 or not isinstance(body, dict):
            self._client.unexpected("tickets", code)
        tickets: list[Ticket] = _parse(self._client.service, _TICKETS, body.get("tickets", []))
        return [t for t in tickets if t.seller_id == seller_id]

    async def ticket(self, seller_id: int, claim_id: int) -> Ticket | None:
        status, body = await self._client.call("GET", self._path(seller_id, f"tickets/{claim_id}"))
        return self._one_ticket(seller_id, status, body)

    async def change_ticket(
        self, seller_id: int, claim_id: int, change: TicketChange
    ) -> Ticket | None:
        ticket = self._path(seller_id, f"tickets/{claim_id}")
        steps: list[tuple[str, dict[str, Any]]] = []
        if change.status is not None:
            steps.append(("status", {"status": change.status}))
        if change.assignee is not None or change.unassign:
            steps.append(("assignee", {"assignee": change.assignee}))
        if change.note is not None:
            steps.append(("notes", {"author": change.author, "text": change.note}))
        changed: Ticket | None = None
        for what, fields in steps:
            status, body = await self._client.call("POST", f"{ticket}/{what}", json=fields)
            if 400 <= status < 500 and status != 404:
                raise ValueError(_detail(body))
            changed = self._one_ticket(seller_id, status, body)
            if changed is None:
                return None
        return changed if changed is not None else await self.ticket(seller_id, claim_id)

    def _one_ticket(self, seller_id: int, status: int, body: object) -> Ticket | None:
        if status == 404:
            return None
        if status != 200:
            self._client.unexpected("ticket", status)
        ticket: Ticket = _parse(self._client.service, TypeAdapter(Ticket), body)
        return ticket if ticket.seller_id == seller_id else None

    async def order_thread(self, seller_id: int, order_id: int) -> list[TimelineStep]:
        status, body = await self._client.call(
            "GET", self._path(seller_id, f"orders/{order_id}/timeline")
        )
        if status == 404:
            return []
        if status != 200 or not isinstance(body, dict):
            self._client.unexpected("timeline", status)
        steps = [
            {"at": e.get("at"), "kind": e.get("kind", ""), "text": _entry_text(e)}
            for e in body.get("entries") or []
            if isinstance(e, dict)
        ]
        # The order's own states come from the orders service; these add the rest.
        parsed: list[TimelineStep] = _parse(self._client.service, _STEPS, steps)
        return [step for step in parsed if step.kind != "order"]


_EPOCH: Final = datetime.min.replace(tzinfo=UTC)


def _latest(conversation: ConversationSummary) -> datetime:
    return conversation.last_message_at or _EPOCH


def _sent(status: int, body: object) -> bool:
    """An answer's or a message's outcome: True, False for 404, or `AnswerRefused`."""
    if status == 404:
        return False
    if status >= 400:
        fields = body if isinstance(body, dict) else {}
        code = str(fields.get("rule") or fields.get("error") or "refused")
        raise AnswerRefused(_ANSWER_CODES.get(code, code), _detail(body) or code)
    return True


def _entry_text(entry: dict[str, Any]) -> str:
    detail = entry.get("detail") if isinstance(entry.get("detail"), dict) else {}
    text = detail.get("text") if isinstance(detail, dict) else None
    kind = str(entry.get("type", ""))
    return f"{kind}: {text}" if text else kind
