"""The catalog's HTTP read API: items and search for other services, probes and metrics.

``GET /catalog/sellers/{seller_id}/items`` (search) and ``GET /catalog/items/{item_id}``
need HTTP Basic service credentials (``settings.service_credentials``); ``/healthz``,
``/readyz`` and ``/metrics`` do not. Every error is ``{"error": code, "detail": ...}``. The
error mapping, the credentials check and the probes are the shared ones
(`peepers_common.read_api`).

Every read answer carries ``Peepers-Cache-State: ready`` or ``rebuilding``: while the
catalog rebuilds a lost cache, an answer may miss items or hold older versions.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Handler

from peepers_catalog.ports import ItemSearch, ItemStore, SearchPage
from peepers_catalog.search_query import from_params
from peepers_catalog.settings import Settings
from peepers_common.read_api import OPEN_PATHS, error_response, read_api
from peepers_common.rebuild import STEADY_CACHE, CacheEpoch

__all__ = ["create_api"]

Ping = Callable[[], Awaitable[object]]

store_key: Final = web.AppKey("store_key", ItemStore)
search_key: Final = web.AppKey("search_key", ItemSearch)
cache_key: Final = web.AppKey("cache_key", CacheEpoch)

CACHE_STATE_HEADER: Final = "Peepers-Cache-State"


@web.middleware
async def cache_state_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Flag every read answer with whether the cache is complete or being rebuilt."""
    response = await handler(request)
    if request.path not in OPEN_PATHS:
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
            return error_response(404, "not_found", detail)
        return error_response(404, "not_found", f"no item {item_id!r} in the catalog")
    return web.json_response({**item.model_dump(mode="json"), "gone": await store.is_gone(item_id)})


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

    async def ready() -> tuple[bool, dict[str, Any]]:
        """Ready when Redis, where every answer comes from, answers.

        While a lost cache is rebuilt the answer is still 200, with ``"status":
        "rebuilding"``: flagged answers beat none, and a 503 would take every replica out
        of service at once for the minutes a rebuild takes.
        """
        await ping()
        return True, {"status": "rebuilding" if cache.rebuilding else "ready"}

    app = read_api(
        "catalog",
        credentials=settings.service_credentials,
        ready=ready,
        middlewares=[cache_state_middleware],
    )
    app[cache_key] = cache
    app[store_key] = store
    app[search_key] = search
    app.router.add_get("/catalog/sellers/{seller_id}/items", search_items)
    app.router.add_get("/catalog/items/{item_id}", get_item)
    return app
