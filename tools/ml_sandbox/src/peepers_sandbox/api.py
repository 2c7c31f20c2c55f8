"""The REST API: ML's routes, response shapes, ownership rules and error bodies.

Route names are ``<family>:<name>``; the family is what rate limits, counters and
faults are keyed on. The middleware resolves the bearer token once per request and
stores it under ``request[token_key]``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from peepers_sandbox.errors import (
    SandboxError,
    bad_request,
    forbidden,
    json_response,
    not_found,
    raw_json_response,
)
from peepers_sandbox.oauth import AccessToken
from peepers_sandbox.state import SandboxState, Scroll

state_key = web.AppKey("state_key", SandboxState)
token_key: web.RequestKey[AccessToken | None] = web.RequestKey("token_key")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_ITEM_ORDERS = [
    {"id": "stop_time_asc", "name": "Order by stop time ascending"},
    {"id": "stop_time_desc", "name": "Order by stop time descending"},
    {"id": "last_updated_desc", "name": "Order by lastUpdated descending"},
    {"id": "last_updated_asc", "name": "Order by lastUpdated ascending"},
    {"id": "price_asc", "name": "Order by price ascending"},
    {"id": "price_desc", "name": "Order by price descending"},
]
_ORDER_SORTS = {"date_asc": "Date ascending", "date_desc": "Date descending"}


# ---------------------------------------------------------------------- middleware
def _app_id_from_token(raw: str) -> int:
    # APP_USR-<app_id>-...: even an expired or revoked token is counted against its app.
    parts = raw.split("-", 2)
    if len(parts) >= 2 and parts[1].isdigit():
        return int(parts[1])
    return 0


async def _oauth_app_id(request: web.Request) -> int:
    client_id = request.query.get("client_id")
    if client_id is None and request.method == "POST":
        form = await request.post()
        value = form.get("client_id")
        client_id = value if isinstance(value, str) else None
    return int(client_id) if client_id and client_id.isdigit() else 0


def _route_family(request: web.Request) -> str:
    name = request.match_info.route.name
    return name.partition(":")[0] if name else "unknown"


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/_admin"):
        return await handler(request)
    st = request.app[state_key]
    family = _route_family(request)
    header = request.headers.get("Authorization")
    raw: str | None = None
    if header is not None:
        scheme, _, value = header.partition(" ")
        raw = value.strip() if scheme.lower() == "bearer" else None
    app_id = (
        _app_id_from_token(raw) if raw else await _oauth_app_id(request) if family == "oauth" else 0
    )

    if not st.limiter.hit(app_id, family, time.time()):
        limits = st.config.rate_limits
        headers = (
            {"Retry-After": str(limits.retry_after_s)} if limits.retry_after_s is not None else None
        )
        return json_response(st.limiter.body(), status=429, headers=headers)

    faults = st.config.faults
    if faults.families is None or family in faults.families:
        if faults.latency_ms or faults.latency_jitter_ms:
            await asyncio.sleep(
                (faults.latency_ms + st.fault_rng.uniform(0, faults.latency_jitter_ms)) / 1000
            )
        if faults.drop_rate and st.fault_rng.random() < faults.drop_rate:
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)  # never reaches the client: the socket is gone
        if faults.error_rate and st.fault_rng.random() < faults.error_rate:
            status = st.fault_rng.choice(faults.error_statuses)
            names = {
                500: "internal_server_error",
                502: "bad_gateway",
                503: "service_not_available",
                504: "gateway_timeout",
            }
            error = names.get(status, "internal_server_error")
            return json_response(
                {"message": error.replace("_", " "), "error": error, "status": status, "cause": []},
                status=status,
            )

    token: AccessToken | None = None
    if raw is not None and family != "oauth":
        token = st.oauth.lookup(raw)
        if token is None:
            return _unauthorized("invalid access token")
        if token.user_id in faults.force_401_user_ids:
            return _unauthorized("invalid access token")
    request[token_key] = token
    try:
        return await handler(request)
    except SandboxError as exc:
        return json_response(exc.body(), status=exc.status)
    except web.HTTPNotFound:
        if request.match_info.route.name is not None:
            raise
        return json_response(
            {
                "message": f"Resource {request.path} not found",
                "error": "not_found",
                "status": 404,
                "cause": [],
            },
            status=404,
        )


def _unauthorized(message: str) -> web.Response:
    return json_response(
        {"message": message, "error": "unauthorized", "status": 401, "cause": []}, status=401
    )


# ---------------------------------------------------------------------- helpers
def _state(request: web.Request) -> SandboxState:
    return request.app[state_key]


def _user(request: web.Request) -> AccessToken:
    token: AccessToken | None = request.get(token_key)
    if token is None:
        raise SandboxError(401, "unauthorized", "authorization value not present")
    return token


def _int(
    request: web.Request, name: str, default: int | None = None, *, maximum: int | None = None
) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        if default is None:
            msg = f"Parameter {name} is required"
            raise bad_request(msg)
        return default
    try:
        value = int(raw)
    except ValueError:
        msg = f"Invalid value for {name}: {raw}"
        raise bad_request(msg) from None
    if value < 0:
        msg = f"Parameter {name} must be >= 0"
        raise bad_request(msg)
    if maximum is not None and value > maximum:
        msg = f"Parameter {name} must be lower or equal than {maximum}"
        raise bad_request(msg)
    return value


def _path_int(request: web.Request, name: str) -> int:
    raw = request.match_info[name]
    if not raw.isdigit():
        msg = f"Invalid {name}: {raw}"
        raise bad_request(msg)
    return int(raw)


def _dt(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        msg = f"Invalid date: {value}"
        raise bad_request(msg) from None


def _select(body: dict[str, Any], attributes: list[str]) -> dict[str, Any]:
    return {k: body[k] for k in attributes if k in body}


def _require_tag(request: web.Request) -> None:
    if request.query.get("tag") != "post_sale":
        msg = "The tag parameter is required and must be post_sale"
        raise bad_request(msg, "invalid_tag")


# ---------------------------------------------------------------------- users
async def users_me(request: web.Request) -> web.StreamResponse:
    st = _state(request)
    return json_response(st.market.private_user(st.market.user(_user(request).user_id)))


async def users_get(request: web.Request) -> web.StreamResponse:
    st = _state(request)
    user = st.market.user(_path_int(request, "user_id"))
    token: AccessToken | None = request.get(token_key)
    if token is not None and token.user_id == user["id"]:
        return json_response(st.market.private_user(user))
    return json_response(st.market.public_user(user))


# ---------------------------------------------------------------------- items
async def items_search(request: web.Request) -> web.StreamResponse:
    st = _state(request)
    seller_id = _path_int(request, "user_id")
    token = _user(request)
    st.market.user(seller_id)
    if token.user_id != seller_id:
        msg = "The caller is not authorized to list the items of this user"
        raise forbidden(msg)
    if seller_id not in st.market.items_by_seller:
        msg = f"User {seller_id} is not a seller"
        raise not_found(msg)
    query = request.query
    limit = _int(request, "limit", 50, maximum=100)
    if limit == 0:
        msg = "Parameter limit must be greater than 0"
        raise bad_request(msg)
    order_id = query.get("orders", "stop_time_asc")
    order = next((o for o in _ITEM_ORDERS if o["id"] == order_id), None)
    if order is None:
        msg = f"Invalid orders value: {order_id}"
        raise bad_request(msg)
    body: dict[str, Any] = {"seller_id": str(seller_id), "query": None}
    if query.get("search_type") == "scan":
        scroll = _scroll(st, request, seller_id, order_id)
        page = scroll.ids[scroll.position : scroll.position + limit]
        body["paging"] = {"limit": limit, "offset": scroll.position, "total": len(scroll.ids)}
        scroll.position += len(page)
        body["results"] = page
        body["scroll_id"] = next(k for k, v in st.scrolls.items() if v is scroll)
    else:
        offset = _int(request, "offset", 0)
        if offset + limit > st.config.api.items_search_max_offset:
            msg = (
                f"Offset and limit exceed {st.config.api.items_search_max_offset} results; "
                "use search_type=scan to read further"
            )
            raise bad_request(msg, "invalid_offset")
        ids = _filtered_items(st, request, seller_id, order_id)
        body["paging"] = {"limit": limit, "offset": offset, "total": len(ids)}
        body["results"] = ids[offset : offset + limit]
    body["orders"] = [order]
    body["available_orders"] = _ITEM_ORDERS
    return json_response(body)


def _filtered_items(
    st: SandboxState, request: web.Request, seller_id: int, order_id: str
) -> list[str]:
    items = st.market.items
    ids = st.market.items_by_seller[seller_id]
    status = request.query.get("status")
    sku = request.query.get("sku") or request.query.get("seller_sku")
    if status:
        ids = [i for i in ids if items[i]["status"] == status]
    if sku:
        ids = [i for i in ids if items[i]["seller_custom_field"] == sku]
    if order_id == "stop_time_desc":
        return ids[::-1]
    if order_id.startswith("last_updated"):
        return sorted(
            ids, key=lambda i: items[i]["last_updated"], reverse=order_id.endswith("desc")
        )
    if order_id.startswith("price"):
        return sorted(ids, key=lambda i: items[i]["price"], reverse=order_id.endswith("desc"))
    return list(ids)


def _scroll(st: SandboxState, request: web.Request, seller_id: int, order_id: str) -> Scroll:
    api = st.config.api
    now = st.clock.now()
    scroll_id = request.query.get("scroll_id")
    if scroll_id:
        scroll = st.scrolls.get(scroll_id)
        if scroll is None or scroll.expires_at <= now or scroll.seller_id != seller_id:
            st.scrolls.pop(scroll_id, None)
            msg = "The scroll_id is invalid or has expired"
            raise bad_request(msg, "invalid_scroll_id")
        if api.scroll_ttl_sliding:
            scroll.expires_at = now + api.scroll_ttl_s
        return scroll
    for key in [k for k, v in st.scrolls.items() if v.expires_at <= now]:
        del st.scrolls[key]
    # A scan is a snapshot: items that change while it runs are neither lost nor repeated.
    scroll = Scroll(
        seller_id, _filtered_items(st, request, seller_id, order_id), 0, now + api.scroll_ttl_s
    )
    st.scrolls[secrets.token_urlsafe(48)] = scroll
    return scroll


async def items_get(request: web.Request) -> web.StreamResponse:
    st = _state(request)
    item_id = request.match_info["item_id"]
    token: AccessToken | None = request.get(token_key)
    item = st.market.item(item_id)
    owner = token is not None and token.user_id == item["seller_id"]
    attributes = request.query.get("attributes")
    if attributes:
        return json_response(_select(st.market.item_view(item, owner=owner), attributes.split(",")))
    return raw_json_response(st.market.item_json(item_id, owner=owner))


async def items_prices(request: web.Request) -> web.StreamResponse:
    st = _state(request)
    return json_response(st.market.item_prices(st.market.item(request.match_info["item_id"])))


def _ids(request: web.Request) -> list[str]:
    raw = request.query.get("ids")
    if not raw:
        msg = "Parameter ids is required"
        raise bad_request(msg)
    ids = [i.strip() for i in raw.split(",") if i.strip()]
    if len(ids) > 20:
        msg = f"The number of ids exceeds the maximum allowed: 20 (got {len(ids)})"
        raise bad_request(msg, "too_many_ids")
    return ids


def _multi_entries(request: web.Request) -> list[tuple[str, int, Any]]:
    st = _state(request)
    token: AccessToken | None = request.get(token_key)
    entries: list[tuple[str, int, Any]] = []
    for item_id in _ids(request):
        item = st.market.items.get(item_id)
        if item is None:
            entries.append((item_id, 404, not_found(f"Item with id {item_id} not found").body()))
        else:
            owner = token is not None and token.user_id == item["seller_id"]
            entries.append((item_id, 200, (owner, item)))
    return entries


async def items_multiget(request: web.Request) -> web.StreamResponse:
    st = _state(request)
    attributes = request.query.get("attributes")
    chunks: list[bytes] = []
    for item_id, code, payload in _multi_entries(request):
        if code != 200:
            chunks.append(json.dumps({"code": code, "body": payload}).encode())
        elif attributes:
            owner, item = payload
            body = _select(st.market.item_view(item, owner=owner), attributes.split(","))
            chunks.append(json.dumps({"code": 200, "body": body}, ensure_ascii=False).encode())
        else:
            chunks.append(
                b'{"code":200,"body":' + st.market.item_json(item_id, owner=payload[0]) + b"}"
            )
    return raw_json_response(b"[" + b",".join(chunks) + b"]")


async def items_bulk(request: web.Request) -> web.StreamResponse:
    st = _state(request)
    attributes = request.query.get("attributes")
    wanted = [a.removeprefix("body.") for a in attributes.split(",")] if attributes else None
    out: list[dict[str, Any]] = []
    for item_id, code, payload in _multi_entries(request):
        if code != 200:
            out.append({"id": item_id, "status_code": code, "body": payload})
            continue
        owner, item = payload
        view = st.market.item_view(item, owner=owner)
        out.append(
            {"id": item_id, "status_code": 200, "body": _select(view, wanted) if wanted else view}
        )
    return json_response(out)


# ---------------------------------------------------------------------- orders
def _order_for(st: SandboxState, token: AccessToken, order_id: int) -> dict[str, Any]:
    order = st.market.order(order_id)
    if token.user_id not in (order["seller"]["id"], order["buyer"]["id"]):
        raise SandboxError(
            403, "not_owned_order", f"The caller is not the owner of the order {order_id}"
        )
    return order


async def orders_get(request: web.Request) -> web.StreamResponse:
    st = _state(request)
    return json_response(_order_for(st, _user(request), _path_int(request, "order_id")))


async def orders_search(request: web.Request) -> web.StreamResponse:
    st = _state(request)
    token = _user(request)
    query = request.query
    seller, buyer = query.get("seller"), query.get("buyer")
    if not seller and not buyer:
        msg = "Search needs the seller or the buyer filter"
        raise bad_request(msg, "invalid_params")
    caller = str(token.user_id)
    if (seller and seller != caller) or (buyer and buyer != caller):
        raise SandboxError(403, "caller.id.invalid", "Invalid caller.id")
    by_seller = bool(seller)
    index = st.market.orders_by_seller if by_seller else st.market.orders_by_buyer
    orders = [st.market.orders[o] for o in index.get(token.user_id, [])]
    statuses = [s for s in query.get("order.status", "").split(",") if s]
    if statuses:
        orders = [o for o in orders if o["status"] in statuses]
    elif st.config.api.orders_search_hide_cancelled:
        orders = [o for o in orders if o["status"] != "cancelled"]
    if item := query.get("item"):
        orders = [o for o in orders if o["order_items"][0]["item"]["id"] == item]
    if q := query.get("q"):
        orders = [
            o
            for o in orders
            if q == str(o["id"])
            or q.lower() in o["order_items"][0]["item"]["title"].lower()
            or q == o["order_items"][0]["item"]["id"]
        ]
    for field in ("date_created", "date_closed", "date_last_updated"):
        key = "last_updated" if field == "date_last_updated" else field
        if start := query.get(f"order.{field}.from"):
            since = _dt(start)
            orders = [o for o in orders if o[key] and _dt(o[key]) >= since]
        if end := query.get(f"order.{field}.to"):
            until = _dt(end)
            orders = [o for o in orders if o[key] and _dt(o[key]) <= until]
    sort = query.get("sort", "date_asc")
    if sort not in _ORDER_SORTS:
        msg = f"Invalid sort: {sort}"
        raise bad_request(msg, "invalid_sort")

    def sort_key(o: dict[str, Any]) -> tuple[datetime, int]:
        stamp = (o["date_closed"] or o["date_created"]) if by_seller else o["date_created"]
        return _dt(stamp), o["id"]

    orders.sort(key=sort_key, reverse=sort == "date_desc")
    limit = _int(request, "limit", 50, maximum=st.config.api.orders_search_max_limit)
    offset = _int(request, "offset", 0)
    return json_response(
        {
            "query": q or None,
            "results": orders[offset : offset + limit],
            "sort": {"id": sort, "name": _ORDER_SORTS[sort]},
            "available_sorts": [{"id": k, "name": v} for k, v in _ORDER_SORTS.items() if k != sort],
            "filters": [],
            "paging": {"total": len(orders), "offset": offset, "limit": limit},
            "display": "complete",
        }
    )


async def packs_get(request: web.Request) -> web.StreamResponse:
    st = _state(request)
    pack_id = _path_int(request, "pack_id")
    token = _user(request)
    seller_id, buyer_id = st.market.pack_parties(pack_id)
    if token.user_id not in (seller_id, buyer_id):
        msg = "The user has not access to the order"
        raise forbidden(msg)
    return json_response(st.market.packs[pack_id])


async def payments_get(request: web.Request) -> web.StreamResponse:
    st = _state(request)
    token = _user(request)
    payment = st.market.payments.get(_path_int(request, "payment_id"))
    if payment is None:
        msg = "Payment not found"
        raise not_found(msg)
    if token.user_id not in (payment["collector"]["id"], payment["payer_id"]):
        msg = "The caller is not a party of the payment"
        raise forbidden(msg)
    return json_response({"collection": payment})


async def shipments_get(request: web.Request) -> web.StreamResponse:
    st = _state(request)
    token = _user(request)
    shipment_id = _path_int(request, "shipment_id")
    shipment = st.market.shipment(shipment_id)
    seller_id, buyer_id, _ = st.market.shipment_parties[shipment_id]
    if token.user_id not in (seller_id, buyer_id):
        msg = "The caller is not authorized to access this shipment"
        raise forbidden(msg)
    return json_response(shipment)


# ---------------------------------------------------------------------- questions
async def questions_get(request: web.Request) -> web.StreamResponse:
    st = _state(request)
    _user(request)
    return json_response(st.market.question(_path_int(request, "question_id")))


async def questions_search(request: web.Request) -> web.StreamResponse:
    st = _state(request)
    token = _user(request)
    query = request.query
    market = st.market
    if seller := query.get("seller_id"):
        if seller != str(token.user_id):
            msg = "The caller is not the seller"
            raise forbidden(msg)
        questions = [market.questions[q] for q in market.questions_by_seller.get(token.user_id, [])]
    elif item_id := query.get("item"):
        questions = [q for q in market.questions.values() if q["item_id"] == item_id]
    elif from_id := query.get("from"):
        questions = [q for q in market.questions.values() if str(q["buyer_id"]) == from_id]
    else:
        msg = "Search needs seller_id, item or from"
        raise bad_request(msg, "invalid_params")
    if status := query.get("status"):
        questions = [q for q in questions if q["status"] == status.upper()]
    fields = [f for f in query.get("sort_fields", "date_created").split(",") if f]
    mapping = {
        "item_id": "item_id",
        "seller_id": "seller_id",
        "from_id": "buyer_id",
        "date_created": "date_created",
    }
    if any(f not in mapping for f in fields):
        msg = f"Invalid sort_fields: {fields}"
        raise bad_request(msg)
    descending = query.get("sort_types", "ASC").upper() == "DESC"
    questions.sort(key=lambda q: tuple(q[mapping[f]] for f in fields), reverse=descending)
    limit = _int(request, "limit", 50, maximum=100)
    offset = _int(request, "offset", 0)
    return json_response(
        {
            "total": len(questions),
            "limit": limit,
            "questions": questions[offset : offset + limit],
            "filters": {
                "limit": limit,
                "offset": offset,
                "api_version": query.get("api_version", "4"),
                "is_admin": False,
                "sorts": [],
                "caller": token.user_id,
                "seller": str(token.user_id),
            },
            "available_filters": [
                {
                    "id": "status",
                    "name": "Status",
                    "type": "text",
                    "values": [
                        "ANSWERED",
                        "BANNED",
                        "CLOSED_UNANSWERED",
                        "DELETED",
                        "DISABLED",
                        "UNANSWERED",
                        "UNDER_REVIEW",
                    ],
                }
            ],
            "available_sorts": ["item_id", "from_id", "date_created", "seller_id"],
        }
    )


async def answers_post(request: web.Request) -> web.StreamResponse:
    st = _state(request)
    token = _user(request)
    try:
        payload = await request.json()
    except ValueError:
        msg = "Body must be JSON"
        raise bad_request(msg, "invalid_post_body") from None
    if (
        not isinstance(payload, dict)
        or set(payload) - {"question_id", "text"}
        or "question_id" not in payload
    ):
        msg = "Valid attributes: [question_id, text]"
        raise bad_request(msg, "invalid_post_body")
    try:
        question_id = int(payload["question_id"])
    except (TypeError, ValueError):
        msg = "Invalid question_id"
        raise bad_request(msg, "invalid_question") from None
    text = payload.get("text")
    if not isinstance(text, str):
        msg = "text is required"
        raise bad_request(msg, "invalid_post_body")
    return json_response(st.market.answer_question(question_id, text, token.user_id))


# ---------------------------------------------------------------------- messages
def _pack_for(
    st: SandboxState, token: AccessToken, pack_id: int, seller_id: int
) -> tuple[int, int]:
    pack_seller, pack_buyer = st.market.pack_parties(pack_id)
    if seller_id != pack_seller:
        msg = f"Pack {pack_id} not found for seller {seller_id}"
        raise not_found(msg)
    if token.user_id not in (pack_seller, pack_buyer):
        msg = "The caller is not a party of this conversation"
        raise forbidden(msg)
    return pack_seller, pack_buyer


async def messages_pack(request: web.Request) -> web.StreamResponse:
    st = _state(request)
    _require_tag(request)
    token = _user(request)
    pack_id, seller_id = _path_int(request, "pack_id"), _path_int(request, "seller_id")
    _pack_for(st, token, pack_id, seller_id)
    ids = st.market.messages_by_pack[pack_id]
    limit = _int(request, "limit", 10, maximum=100)
    offset = _int(request, "offset", 0)
    page = ids[offset : offset + limit]
    if request.query.get("mark_as_read", "true") != "false":
        for message_id in page:
            st.market.mark_read(message_id, token.user_id)
    return json_response(
        {
            "paging": {"limit": limit, "offset": offset, "total": len(ids)},
            "conversation_status": {
                "path": f"/packs/{pack_id}/seller/{seller_id}",
                "status": "active",
                "substatus": None,
                "status_date": None,
                "status_update_allowed": False,
                "claim_id": None,
                "shipping_id": None,
            },
            "messages": [st.market.messages[m] for m in page],
        }
    )


async def messages_post(request: web.Request) -> web.StreamResponse:
    st = _state(request)
    _require_tag(request)
    token = _user(request)
    pack_id, seller_id = _path_int(request, "pack_id"), _path_int(request, "seller_id")
    pack_seller, _ = _pack_for(st, token, pack_id, seller_id)
    try:
        payload = await request.json()
    except ValueError:
        msg = "Body must be JSON"
        raise bad_request(msg, "invalid_body") from None
    text = payload.get("text") if isinstance(payload, dict) else None
    if not isinstance(text, str) or not text:
        msg = "text is required"
        raise bad_request(msg, "invalid_body")
    if len(text) > st.config.api.message_text_max_len:
        msg = f"text exceeds {st.config.api.message_text_max_len} characters"
        raise bad_request(msg, "invalid_body")
    sender = str(payload.get("from", {}).get("user_id", ""))
    if sender != str(token.user_id):
        msg = "from.user_id must be the caller"
        raise forbidden(msg)
    role = "seller" if token.user_id == pack_seller else "buyer"
    message = st.market.new_message(pack_id=pack_id, text=text, from_role=role)
    return json_response(message, status=201)


async def messages_get(request: web.Request) -> web.StreamResponse:
    st = _state(request)
    _require_tag(request)
    token = _user(request)
    message_id = request.match_info["message_id"]
    message = st.market.messages.get(message_id)
    if message is None:
        msg = f"The message with id: {message_id} could not be retrieved from storage"
        raise not_found(msg)
    seller_id, buyer_id = st.market.pack_parties(st.market.message_pack[message_id])
    if token.user_id not in (seller_id, buyer_id):
        msg = "The caller is not a party of this conversation"
        raise forbidden(msg)
    if st.config.api.message_by_id_shape == "bare":
        return json_response(message)
    return json_response({"paging": None, "conversation_status": None, "messages": [message]})


# ---------------------------------------------------------------------- claims
def _claims_forbidden() -> SandboxError:
    return SandboxError(403, "forbidden_error", "The caller is not a player of this claim")


async def claims_get(request: web.Request) -> web.StreamResponse:
    st = _state(request)
    token = _user(request)
    claim = st.market.claim(_path_int(request, "claim_id"))
    if token.user_id not in [p["user_id"] for p in claim["players"]]:
        raise _claims_forbidden()
    return json_response(claim)


async def claims_search(request: web.Request) -> web.StreamResponse:
    st = _state(request)
    token = _user(request)
    query = request.query
    player = query.get("players.user_id")
    if not player and not query.get("resource_id") and not query.get("id"):
        return json_response(
            {"error": "invalid_query", "message": "At least one filter is required"}, status=400
        )
    if player and player != str(token.user_id):
        raise _claims_forbidden()
    claims = [
        c
        for c in st.market.claims.values()
        if token.user_id in [p["user_id"] for p in c["players"]]
    ]
    if role := query.get("players.role"):
        claims = [
            c
            for c in claims
            if any(p["role"] == role and p["user_id"] == token.user_id for p in c["players"])
        ]
    for key in ("status", "stage", "type", "resource_id", "id"):
        if value := query.get(key):
            claims = [c for c in claims if str(c[key]) == value]
    limit = _int(request, "limit", 30, maximum=100)
    offset = _int(request, "offset", 0)
    if offset + limit >= 10000:
        return json_response(
            {"error": "invalid_params", "message": "offset + limit must be < 10000"}, status=400
        )
    return json_response(
        {
            "paging": {"total": len(claims), "offset": offset, "limit": limit},
            "data": claims[offset : offset + limit],
        }
    )


# ---------------------------------------------------------------------- missed feeds
async def missed_feeds(request: web.Request) -> web.StreamResponse:
    st = _state(request)
    token = _user(request)
    app_id = _int(request, "app_id")
    if app_id != token.app_id:
        msg = "The token does not belong to this application"
        raise forbidden(msg)
    topic = request.query.get("topic")
    if topic == "items":
        site_id = request.query.get("site_id")
        if not site_id:
            msg = "site_id is required for topic items"
            raise bad_request(msg)
    limit = _int(request, "limit", 10, maximum=1000)
    offset = _int(request, "offset", 0)
    feeds = st.notifier.missed_feeds(app_id, topic, offset, limit)
    return json_response({"messages": feeds["messages"]})


def setup_api_routes(app: web.Application) -> None:
    st = app[state_key]
    r = app.router
    r.add_get("/authorization", st.oauth.authorize_page, name="oauth:authorize")
    r.add_post("/authorization", st.oauth.authorize_submit, name="oauth:approve")
    r.add_post("/oauth/token", st.oauth.token, name="oauth:token")
    r.add_get("/users/me", users_me, name="users:me")
    r.add_get("/users/{user_id}/items/search", items_search, name="items_search:search")
    r.add_get("/users/{user_id}", users_get, name="users:get")
    r.add_get("/items/bulk", items_bulk, name="items:bulk")
    r.add_get("/items", items_multiget, name="items:multiget")
    r.add_get("/items/{item_id}/prices", items_prices, name="items:prices")
    r.add_get("/items/{item_id}", items_get, name="items:get")
    r.add_get("/orders/search", orders_search, name="orders:search")
    r.add_get("/orders/{order_id}", orders_get, name="orders:get")
    r.add_get("/packs/{pack_id}", packs_get, name="orders:pack")
    r.add_get("/collections/{payment_id}", payments_get, name="payments:get")
    r.add_get("/shipments/{shipment_id}", shipments_get, name="shipments:get")
    r.add_get("/questions/search", questions_search, name="questions:search")
    r.add_get("/questions/{question_id}", questions_get, name="questions:get")
    r.add_post("/answers", answers_post, name="answers:post")
    r.add_get("/messages/packs/{pack_id}/sellers/{seller_id}", messages_pack, name="messages:pack")
    r.add_post(
        "/messages/packs/{pack_id}/sellers/{seller_id}", messages_post, name="messages_write:post"
    )
    r.add_get("/messages/{message_id}", messages_get, name="messages:get")
    r.add_get("/post-purchase/v1/claims/search", claims_search, name="claims:search")
    r.add_get("/post-purchase/v1/claims/{claim_id}", claims_get, name="claims:get")
    r.add_get("/missed_feeds", missed_feeds, name="missed_feeds:get")
