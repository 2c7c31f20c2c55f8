"""Items: a seller's search (with scan), one item, prices, multiget and bulk."""

from __future__ import annotations

import json
import secrets
from typing import Any

from aiohttp import web

from peepers_sandbox.errors import (
    bad_request,
    forbidden,
    json_response,
    not_found,
    raw_json_response,
)
from peepers_sandbox.oauth import AccessToken
from peepers_sandbox.routes.common import (
    int_param,
    path_int,
    select,
    state_of,
    token_key,
    token_of,
)
from peepers_sandbox.state import SandboxState, Scroll

_ITEM_ORDERS = [
    {"id": "stop_time_asc", "name": "Order by stop time ascending"},
    {"id": "stop_time_desc", "name": "Order by stop time descending"},
    {"id": "last_updated_desc", "name": "Order by lastUpdated descending"},
    {"id": "last_updated_asc", "name": "Order by lastUpdated ascending"},
    {"id": "price_asc", "name": "Order by price ascending"},
    {"id": "price_desc", "name": "Order by price descending"},
]


async def items_search(request: web.Request) -> web.StreamResponse:
    st = state_of(request)
    seller_id = path_int(request, "user_id")
    token = token_of(request)
    st.market.user(seller_id)
    if token.user_id != seller_id:
        msg = "The caller is not authorized to list the items of this user"
        raise forbidden(msg)
    if seller_id not in st.market.items_by_seller:
        msg = f"User {seller_id} is not a seller"
        raise not_found(msg)
    query = request.query
    limit = int_param(request, "limit", 50, maximum=100)
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
        offset = int_param(request, "offset", 0)
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
    st = state_of(request)
    item_id = request.match_info["item_id"]
    token: AccessToken | None = request.get(token_key)
    item = st.market.item(item_id)
    owner = token is not None and token.user_id == item["seller_id"]
    attributes = request.query.get("attributes")
    if attributes:
        return json_response(select(st.market.item_view(item, owner=owner), attributes.split(",")))
    return raw_json_response(st.market.item_json(item_id, owner=owner))


async def items_prices(request: web.Request) -> web.StreamResponse:
    st = state_of(request)
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
    st = state_of(request)
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
    st = state_of(request)
    attributes = request.query.get("attributes")
    chunks: list[bytes] = []
    for item_id, code, payload in _multi_entries(request):
        if code != 200:
            chunks.append(json.dumps({"code": code, "body": payload}).encode())
        elif attributes:
            owner, item = payload
            body = select(st.market.item_view(item, owner=owner), attributes.split(","))
            chunks.append(json.dumps({"code": 200, "body": body}, ensure_ascii=False).encode())
        else:
            chunks.append(
                b'{"code":200,"body":' + st.market.item_json(item_id, owner=payload[0]) + b"}"
            )
    return raw_json_response(b"[" + b",".join(chunks) + b"]")


async def items_bulk(request: web.Request) -> web.StreamResponse:
    st = state_of(request)
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
            {"id": item_id, "status_code": 200, "body": select(view, wanted) if wanted else view}
        )
    return json_response(out)


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/users/{user_id}/items/search", items_search, name="items_search:search")
    r.add_get("/items/bulk", items_bulk, name="items:bulk")
    r.add_get("/items", items_multiget, name="items:multiget")
    r.add_get("/items/{item_id}/prices", items_prices, name="items:prices")
    r.add_get("/items/{item_id}", items_get, name="items:get")
