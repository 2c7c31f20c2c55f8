"""The catalog's HTTP read API: items and search for other services, probes and metrics.

``GET /catalog/sellers/{seller_id}/items`` (search) and ``GET /catalog/items/{item_id}``
need HTTP Basic service credentials (``settings.service_credentials``); ``/healthz``,
``/readyz`` and ``/metrics`` do not. Every error is ``{"error": code, "detail": ...}``.

Every read answer carries ``Peepers-Cache-State: ready`` or ``rebuilding``: while the
catalog rebuilds a lost cache, an answer may miss items or hold older versions.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Handler

from peepers_catalog.ports import STEADY_CACHE, CacheEpoch, ItemSearch, ItemStore, SearchPage
from peepers_catalog.search_query import from_params
from peepers_catalog.settings import Settings
from peepers_common.errors import CacheUnavailable, InvalidQuery, ServiceUnauthorized
from peepers_common.metrics import http_metrics_middleware, metrics_view
from peepers_common.service_auth import authenticate_service

__all__ = ["create_api"]

log = logging.getLogger(__name__)

Ping = Callable[[], Awaitable[object]]

settings_key: Final = web.AppKey("settings_key", Settings)
store_key: Final = web.AppKey("store_key", ItemStore)
search_key: Final = web.AppKey("search_key", ItemSearch)
ping_key: Final = web.AppKey[Ping]("ping_key")
cache_key: Final = web.AppKey("cache_key", CacheEpoch)

_OPEN_PATHS: Final = frozenset({"/healthz", "/readyz", "/metrics"})
CACHE_STATE_HEADER: Final = "Peepers-Cache-State"


def _error(status: int, code: str, detail: str, **headers: str) -> web.Response:
    return web.json_response(
        {"error": code, "detail": detail},
        status=status,
        headers={"Cache-Control": "no-store", **headers},
    )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The one place errors become responses."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
    except InvalidQuery as exc:
        return _error(400, "bad_request", str(exc))
    except ServiceUnauthorized as exc:
        return _error(
            401, "unauthorized", str(exc), **{"WWW-Authenticate": 'Basic realm="peepers"'}
        )
    except CacheUnavailable as exc:
        log.error("%s %s failed: %s", request.method, request.path, exc)
        return _error(503, "storage_unavailable", "the catalog cache is not answering")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path not in _OPEN_PATHS:
        credentials = request.app[settings_key].service_credentials
        authenticate_service(credentials, request.headers.get("Authorization"))
    return await handler(request)


@web.middleware
async def cache_state_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Flag every read answer with whether the cache is complete or being rebuilt."""
    response = await handler(request)
    if request.path not in _OPEN_PATHS:
        rebuilding = request.app[cache_key].rebuilding
        response.headers[CACHE_STATE_HEADER] = "rebuilding" if rebuilding else "ready"
    return response


def _page_json(page: SearchPage) -> dict[str, Any]:
    return {
        "items": [item.model_dump(mode="json") for item in page.items],
        "total": page.total,
        "next_cursor": page.next_cursor,
        "facets": {name: dict(counts) for name, counts in page.facets.items()},
    }


async def search_items(request: web.Request) -> web.StreamResponse:
    query = from_params(request.match_info["seller_id"], request.query)
    page = await request.app[search_key].search(query)
    return web.json_response(_page_json(page))


async def get_item(request: web.Request) -> web.StreamResponse:
    store = request.app[store_key]
    item_id = request.match_info["item_id"]
    item = await store.get(item_id)
    if item is None:
        if await request.app[cache_key].after_miss():
            detail = f"no item {item_id!r} in the catalog yet: it is being rebuilt"
            return _error(404, "not_found", detail)
        return _error(404, "not_found", f"no item {item_id!r} in the catalog")
    return web.json_response({**item.model_dump(mode="json"), "gone": await store.is_gone(item_id)})


async def healthz(_request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.StreamResponse:
    """Ready when Redis, where every answer comes from, answers.

    While a lost cache is rebuilt the answer is still 200, with ``"status": "rebuilding"``:
    flagged answers beat none, and a 503 would take every replica out of service at once
    for the minutes a rebuild takes.
    """
    try:
        await request.app[ping_key]()
    except CacheUnavailable:
        return web.json_response({"status": "redis unavailable"}, status=503)
    if request.app[cache_key].rebuilding:
        return web.json_response({"status": "rebuilding"})
    return web.json_response({"status": "ready"})


def create_api(
    settings: Settings,
    *,
    store: ItemStore,
    search: ItemSearch,
    ping: Ping,
    cache: CacheEpoch = STEADY_CACHE,
) -> web.Application:
    """The read API over ``store`` and ``search``; ``ping`` checks Redis for /readyz.

    ``ping`` raises `CacheUnavailable` when Redis does not answer; ``cache`` says whether
    the cache is being rebuilt (`peepers_common.rebuild.CacheGuard`).
    """
    app = web.Application(
        middlewares=[
            http_metrics_middleware("catalog"),
            cache_state_middleware,
            error_middleware,
            auth_middleware,
        ]
    )
    app[cache_key] = cache
    app[settings_key] = settings
    app[store_key] = store
    app[search_key] = search
    app[ping_key] = ping
    app.router.add_get("/catalog/sellers/{seller_id}/items", search_items)
    app.router.add_get("/catalog/items/{item_id}", get_item)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    return app
