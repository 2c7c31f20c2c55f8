"""The orders service's HTTP read API (HTTP Basic service credentials, as the catalog's).

* ``GET /orders/sellers/{seller_id}/orders``: the seller's orders, newest first, filtered
  by ``state``, ``buyer``, ``item`` and the creation range ``from`` / ``to`` (ISO 8601),
  ``limit`` (1-200, default 50) per page; ``cursor`` from ``next_cursor`` continues.
* ``GET /orders/orders/{order_id}``: one order with its timeline and its pack (the pack's
  orders, each with its own state, and their shared shipment).
* ``GET /orders/sellers/{seller_id}/analytics?from=YYYY-MM-DD&to=YYYY-MM-DD``: sales by
  day (default: the last 30 days) and over the range.
* ``GET /orders/sellers/{seller_id}/summary``: orders by state.
* ``/healthz``, ``/readyz``, ``/metrics`` (no credentials).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final
from zoneinfo import ZoneInfo

from aiohttp import web

from peepers_common.errors import InvalidQuery
from peepers_common.read_api import Readiness, error_response, read_api
from peepers_orders.analytics import AnalyticsStore, percentile
from peepers_orders.ports import CachedOrder, DayFigures, OrderQuery, OrderStore
from peepers_orders.settings import Settings

__all__ = ["create_api"]

store_key: Final = web.AppKey("store_key", OrderStore)
analytics_key: Final = web.AppKey("analytics_key", AnalyticsStore)
zone_key: Final = web.AppKey("zone_key", ZoneInfo)
_MAX_DAYS: Final = 366


def _int(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    if not value.isdigit():
        msg = f"{name} must be a positive integer"
        raise InvalidQuery(msg)
    return int(value)


def _time(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        msg = f"{name} must be an ISO 8601 time"
        raise InvalidQuery(msg) from None
    if moment.tzinfo is None:
        msg = f"{name} needs a UTC offset"
        raise InvalidQuery(msg)
    return moment


def _day(value: str | None, name: str, default: date) -> date:
    if not value:
        return default
    try:
        return date.fromisoformat(value)
    except ValueError:
        msg = f"{name} must be a date (YYYY-MM-DD)"
        raise InvalidQuery(msg) from None


def _order_json(order: CachedOrder) -> dict[str, Any]:
    return {
        **order.summary.model_dump(mode="json"),
        "seller_id": order.seller_id,
        "ml_last_updated": order.ml_last_updated.isoformat() if order.ml_last_updated else None,
    }


async def list_orders(request: web.Request) -> web.StreamResponse:
    query = request.query
    seller_id = int(request.match_info["seller_id"])
    page = await request.app[store_key].search(
        OrderQuery(
            seller_id=seller_id,
            state=query.get("state") or None,
            buyer_id=_int(query.get("buyer"), "buyer"),
            item_id=query.get("item") or None,
            created_from=_time(query.get("from"), "from"),
            created_to=_time(query.get("to"), "to"),
            limit=_int(query.get("limit"), "limit") or 50,
            cursor=query.get("cursor") or None,
        )
    )
    return web.json_response(
        {"orders": [_order_json(o) for o in page.orders], "next_cursor": page.next_cursor}
    )


async def get_order(request: web.Request) -> web.StreamResponse:
    store = request.app[store_key]
    order_id = int(request.match_info["order_id"])
    stored = await store.load(order_id)
    if stored.order is None:
        return error_response(404, "not_found", f"no order {order_id} in the cache")
    order = stored.order
    pack_json = None
    if order.summary.pack_id is not None and (pack := await store.pack(order.summary.pack_id)):
        siblings = await store.get_many(list(pack.order_ids))
        pack_json = {
            "pack_id": pack.pack_id,
            "shipment_id": pack.shipment_id,
            "orders": [
                {"order_id": o.summary.order_id, "state": o.summary.state} for o in siblings
            ],
        }
    return web.json_response(
        {
            **_order_json(order),
            "timeline": [entry.model_dump(mode="json") for entry in order.timeline],
            "pack": pack_json,
        }
    )


def _money(values: dict[str, Decimal]) -> dict[str, str]:
    return {currency: f"{amount:.2f}" for currency, amount in sorted(values.items())}


def _durations(values: tuple[float, ...]) -> dict[str, float | int | None]:
    return {
        "count": len(values),
        "median_s": percentile(values, 0.5),
        "p90_s": percentile(values, 0.9),
    }


def _figures_json(days: list[DayFigures]) -> dict[str, Any]:
    revenue: dict[str, Decimal] = {}
    for day in days:
        for currency, amount in day.revenue.items():
            revenue[currency] = revenue.get(currency, Decimal(0)) + amount
    return {
        "orders": sum(d.orders for d in days),
        "units": sum(d.units for d in days),
        "revenue": _money(revenue),
        "cancellations": sum(d.cancellations for d in days),
        "refunds": sum(d.refunds for d in days),
        "paid_to_shipped": _durations(tuple(s for d in days for s in d.paid_to_shipped_s)),
        "shipped_to_delivered": _durations(
            tuple(s for d in days for s in d.shipped_to_delivered_s)
        ),
    }


async def analytics(request: web.Request) -> web.StreamResponse:
    seller_id = int(request.match_info["seller_id"])
    today = datetime.now(request.app[zone_key]).date()
    last = _day(request.query.get("to"), "to", today)
    first = _day(request.query.get("from"), "from", last - timedelta(days=29))
    if first > last or (last - first).days >= _MAX_DAYS:
        msg = f"from must not be after to, and the range at most {_MAX_DAYS} days"
        raise InvalidQuery(msg)
    days = await request.app[analytics_key].days(seller_id, first, last)
    return web.json_response(
        {
            "seller_id": seller_id,
            "from": first.isoformat(),
            "to": last.isoformat(),
            "days": [{"day": d.day.isoformat(), **_figures_json([d])} for d in days],
            "total": _figures_json(days),
        }
    )


async def summary(request: web.Request) -> web.StreamResponse:
    seller_id = int(request.match_info["seller_id"])
    counts = await request.app[store_key].count_by_state(seller_id)
    return web.json_response({"seller_id": seller_id, "by_state": counts})


def create_api(
    settings: Settings, *, store: OrderStore, analytics_store: AnalyticsStore, ready: Readiness
) -> web.Application:
    app = read_api("orders", credentials=settings.service_credentials, ready=ready)
    app[store_key] = store
    app[analytics_key] = analytics_store
    app[zone_key] = ZoneInfo(settings.analytics_timezone)
    app.router.add_get(r"/orders/sellers/{seller_id:\d{1,20}}/orders", list_orders)
    app.router.add_get(r"/orders/orders/{order_id:\d{1,20}}", get_order)
    app.router.add_get(r"/orders/sellers/{seller_id:\d{1,20}}/analytics", analytics)
    app.router.add_get(r"/orders/sellers/{seller_id:\d{1,20}}/summary", summary)
    return app
