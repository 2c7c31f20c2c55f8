"""Orders, packs, payments and shipments."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aiohttp import web

from peepers_sandbox.errors import (
    SandboxError,
    bad_request,
    forbidden,
    json_response,
    not_found,
)
from peepers_sandbox.oauth import AccessToken
from peepers_sandbox.routes.common import (
    int_param,
    parse_dt,
    path_int,
    state_of,
    token_of,
)
from peepers_sandbox.state import SandboxState

_ORDER_SORTS = {"date_asc": "Date ascending", "date_desc": "Date descending"}


def _order_for(st: SandboxState, token: AccessToken, order_id: int) -> dict[str, Any]:
    order = st.market.order(order_id)
    if token.user_id not in (order["seller"]["id"], order["buyer"]["id"]):
        raise SandboxError(
            403, "not_owned_order", f"The caller is not the owner of the order {order_id}"
        )
    return order


def _csv(raw: str | None) -> set[str]:
    return {v.strip() for v in (raw or "").split(",") if v.strip()}


def _matches(order: dict[str, Any], q: str, counterpart: str) -> bool:
    """``q``: the order id, an item id, a word of the title or the counterpart's nickname."""
    item = order["order_items"][0]["item"]
    return (
        q == str(order["id"])
        or q == item["id"]
        or q.lower() in item["title"].lower()
        or q.lower() == order[counterpart]["nickname"].lower()
    )


def _mediation_values(st: SandboxState, order: dict[str, Any], key: str) -> set[str]:
    claims = st.market.claims
    return {str(claims[m["id"]][key]) for m in order["mediations"] if m["id"] in claims}


# FACTS.md §4.3 names the filters; their values are the sandbox's reading (README).
_FEEDBACK_SIDES = {"sale": "seller", "purchase": "buyer"}


def _feedback_filter(
    orders: list[dict[str, Any]], query: Mapping[str, str], caller_role: str
) -> list[dict[str, Any]]:
    if status := query.get("feedback.status"):
        if status not in ("pending", "active"):
            msg = "feedback.status must be pending or active"
            raise bad_request(msg, "invalid_params")
        given = status == "active"
        orders = [o for o in orders if (o["feedback"][caller_role] is not None) == given]
    for side, role in _FEEDBACK_SIDES.items():
        if rating := query.get(f"feedback.{side}.rating"):
            orders = [o for o in orders if (o["feedback"][role] or {}).get("rating") == rating]
        if fulfilled := query.get(f"feedback.{side}.fulfilled"):
            if fulfilled not in ("true", "false"):
                msg = f"feedback.{side}.fulfilled must be true or false"
                raise bad_request(msg, "invalid_params")
            want = fulfilled == "true"
            orders = [o for o in orders if (o["feedback"][role] or {}).get("fulfilled") is want]
    return orders


async def orders_get(request: web.Request) -> web.StreamResponse:
    st = state_of(request)
    return json_response(_order_for(st, token_of(request), path_int(request, "order_id")))


async def orders_search(request: web.Request) -> web.StreamResponse:
    st = state_of(request)
    token = token_of(request)
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
    if tags := _csv(query.get("tags")):
        orders = [o for o in orders if tags <= set(o["tags"])]
    if not_tags := _csv(query.get("tags.not")):
        orders = [o for o in orders if not not_tags & set(o["tags"])]
    if q := query.get("q"):
        counterpart = "buyer" if by_seller else "seller"
        orders = [o for o in orders if _matches(o, q, counterpart)]
    for key in ("stage", "status"):
        if wanted := _csv(query.get(f"mediations.{key}")):
            orders = [o for o in orders if _mediation_values(st, o, key) & wanted]
    orders = _feedback_filter(orders, query, "seller" if by_seller else "buyer")
    for field in ("date_created", "date_closed", "date_last_updated"):
        key = "last_updated" if field == "date_last_updated" else field
        if start := query.get(f"order.{field}.from"):
            since = parse_dt(start)
            orders = [o for o in orders if o[key] and parse_dt(o[key]) >= since]
        if end := query.get(f"order.{field}.to"):
            until = parse_dt(end)
            orders = [o for o in orders if o[key] and parse_dt(o[key]) <= until]
    sort = query.get("sort", "date_asc")
    if sort not in _ORDER_SORTS:
        msg = f"Invalid sort: {sort}"
        raise bad_request(msg, "invalid_sort")

    def sort_key(o: dict[str, Any]) -> tuple[datetime, int]:
        stamp = (o["date_closed"] or o["date_created"]) if by_seller else o["date_created"]
        return parse_dt(stamp), o["id"]

    orders.sort(key=sort_key, reverse=sort == "date_desc")
    limit = int_param(request, "limit", 50, maximum=st.config.api.orders_search_max_limit)
    offset = int_param(request, "offset", 0)
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
    st = state_of(request)
    pack_id = path_int(request, "pack_id")
    token = token_of(request)
    seller_id, buyer_id = st.market.pack_parties(pack_id)
    if token.user_id not in (seller_id, buyer_id):
        msg = "The user has not access to the order"
        raise forbidden(msg)
    return json_response(st.market.packs[pack_id])


async def payments_get(request: web.Request) -> web.StreamResponse:
    st = state_of(request)
    token = token_of(request)
    payment = st.market.payments.get(path_int(request, "payment_id"))
    if payment is None:
        msg = "Payment not found"
        raise not_found(msg)
    if token.user_id not in (payment["collector"]["id"], payment["payer_id"]):
        msg = "The caller is not a party of the payment"
        raise forbidden(msg)
    return json_response({"collection": payment})


def _shipment_for(request: web.Request) -> tuple[SandboxState, dict[str, Any]]:
    st = state_of(request)
    token = token_of(request)
    shipment_id = path_int(request, "shipment_id")
    shipment = st.market.shipment(shipment_id)
    seller_id, buyer_id, _ = st.market.shipment_parties[shipment_id]
    if token.user_id not in (seller_id, buyer_id):
        msg = "The caller is not authorized to access this shipment"
        raise forbidden(msg)
    return st, shipment


async def shipments_get(request: web.Request) -> web.StreamResponse:
    """The new format with ``x-format-new: true``; without it, per ``ApiConfig``."""
    st, shipment = _shipment_for(request)
    if request.headers.get("x-format-new", "").lower() == "true":
        return json_response(shipment)
    if st.config.api.shipments_legacy_format == "error":
        msg = "The x-format-new: true header is required"
        raise bad_request(msg, "invalid_format")
    # The legacy shape still carried order_id and external_reference (FACTS.md §6).
    _, _, order_id = st.market.shipment_parties[shipment["id"]]
    return json_response({**shipment, "order_id": order_id, "external_reference": None})


async def shipments_history(request: web.Request) -> web.StreamResponse:
    st, shipment = _shipment_for(request)
    return json_response(st.market.shipment_history[shipment["id"]])


_HISTORY_DATES = {
    "handling": "date_handling",
    "ready_to_ship": "date_ready_to_ship",
    "shipped": "date_shipped",
    "delivered": "date_delivered",
    "not_delivered": "date_not_delivered",
    "cancelled": "date_cancelled",
}


async def orders_shipments(request: web.Request) -> web.StreamResponse:
    """The hosted view of an order's shipments (FACTS.md §4.4, §6): forward only."""
    st = state_of(request)
    order = _order_for(st, token_of(request), path_int(request, "order_id"))
    shipment = st.market.shipments[order["shipping"]["id"]]
    history: dict[str, str | None] = dict.fromkeys(
        (*_HISTORY_DATES.values(), "date_first_visit", "date_returned")
    )
    for step in st.market.shipment_history[shipment["id"]]:
        if (name := _HISTORY_DATES.get(step["status"])) and history[name] is None:
            history[name] = step["date"]
        if step["substatus"] == "returned":
            history["date_returned"] = step["date"]
    return json_response(
        [
            {
                "id": shipment["id"],
                "type": "forward",
                "status": shipment["status"],
                "substatus": shipment["substatus"],
                "status_history": history,
            }
        ]
    )


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/orders/search", orders_search, name="orders:search")
    r.add_get("/orders/{order_id}/shipments", orders_shipments, name="orders:shipments")
    r.add_get("/orders/{order_id}", orders_get, name="orders:get")
    r.add_get("/packs/{pack_id}", packs_get, name="orders:pack")
    r.add_get("/collections/{payment_id}", payments_get, name="payments:get")
    r.add_get("/shipments/{shipment_id}/history", shipments_history, name="shipments:history")
    r.add_get("/shipments/{shipment_id}", shipments_get, name="shipments:get")
