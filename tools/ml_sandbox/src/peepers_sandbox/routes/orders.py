"""Orders, packs, payments and shipments."""

from __future__ import annotations

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


async def shipments_get(request: web.Request) -> web.StreamResponse:
    st = state_of(request)
    token = token_of(request)
    shipment_id = path_int(request, "shipment_id")
    shipment = st.market.shipment(shipment_id)
    seller_id, buyer_id, _ = st.market.shipment_parties[shipment_id]
    if token.user_id not in (seller_id, buyer_id):
        msg = "The caller is not authorized to access this shipment"
        raise forbidden(msg)
    return json_response(shipment)


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/orders/search", orders_search, name="orders:search")
    r.add_get("/orders/{order_id}", orders_get, name="orders:get")
    r.add_get("/packs/{pack_id}", packs_get, name="orders:pack")
    r.add_get("/collections/{payment_id}", payments_get, name="payments:get")
    r.add_get("/shipments/{shipment_id}", shipments_get, name="shipments:get")
