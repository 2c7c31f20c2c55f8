from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from peepers_catalog.adapters import RedisItemStore
from peepers_catalog.api import create_api
from peepers_catalog.settings import Settings
from peepers_common.errors import CacheUnavailable
from tests.integration.catalog.conftest import SELLER, MakeItem

AUTH = {"Authorization": "Basic " + base64.b64encode(b"orders:s3cret").decode()}
SEARCH = f"/catalog/sellers/{SELLER}/items"


Client = TestClient[Any, Any]


@pytest.fixture
async def client(store: RedisItemStore, make_item: MakeItem) -> AsyncIterator[Client]:
    settings = Settings(service_credentials={"orders": SecretStr("s3cret")})
    await store.put(make_item("MLB1", title="Café", price=Decimal("12.50")), expected=None)
    await store.put(make_item("MLB2", title="Mesa", status="paused", minutes=1), expected=None)
    app = create_api(settings, store=store, search=store, ping=store.ping)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def test_search_answers_items_total_cursor_and_facets(client: Client) -> None:
    response = await client.get(SEARCH, params={"q": "cafe", "limit": "1"}, headers=AUTH)
    body = await response.json()
    assert response.status == 200
    assert [item["id"] for item in body["items"]] == ["MLB1"]
    assert body["items"][0]["price"] == "12.50"
    assert body["total"] == 1
    assert body["next_cursor"] is None
    assert body["facets"] == {"status": {"active": 1}, "category": {"MLB1000": 1}}


async def test_an_item_is_answered_with_its_gone_flag(
    client: Client, store: RedisItemStore
) -> None:
    await store.mark_gone(SELLER, ["MLB2"])
    body = await (await client.get("/catalog/items/MLB2", headers=AUTH)).json()
    assert body["id"] == "MLB2"
    assert body["gone"] is True


async def test_an_unknown_item_is_a_json_404(client: Client) -> None:
    response = await client.get("/catalog/items/MLB404", headers=AUTH)
    assert response.status == 404
    assert (await response.json())["error"] == "not_found"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic " + base64.b64encode(b"orders:wrong").decode()}],
    ids=["none", "wrong-secret"],
)
@pytest.mark.parametrize("path", [SEARCH, "/catalog/items/MLB1"])
async def test_callers_without_service_credentials_get_401(
    client: Client, headers: dict[str, str], path: str
) -> None:
    response = await client.get(path, headers=headers)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert (await response.json())["error"] == "unauthorized"


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
async def test_probes_and_metrics_need_no_credentials(client: Client, path: str) -> None:
    assert (await client.get(path)).status == 200


@pytest.mark.parametrize(
    ("path", "params", "mentions"),
    [
        ("/catalog/sellers/abc/items", {}, "seller id"),
        (SEARCH, {"price_min": "cheap"}, "price_min"),
        (SEARCH, {"price_min": "20", "price_max": "10"}, "price_min"),
        (SEARCH, {"sort": "name"}, "sort"),
        (SEARCH, {"limit": "0"}, "limit"),
        (SEARCH, {"limit": "201"}, "limit"),
        (SEARCH, {"limit": "ten"}, "limit"),
        (SEARCH, {"cursor": "not-a-cursor"}, "cursor"),
    ],
)
async def test_bad_parameters_get_a_400_saying_which(
    client: Client, path: str, params: dict[str, str], mentions: str
) -> None:
    response = await client.get(path, params=params, headers=AUTH)
    body = await response.json()
    assert response.status == 400
    assert body["error"] == "bad_request"
    assert mentions in body["detail"]


async def test_readyz_is_503_when_redis_does_not_answer(store: RedisItemStore) -> None:
    async def down() -> None:
        msg = "Redis failed while pinging"
        raise CacheUnavailable(msg)

    app = create_api(Settings(), store=store, search=store, ping=down)
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/readyz")).status == 503


class Rebuilding:
    """A `CacheEpoch` the test switches; counts the misses the API reported."""

    def __init__(self) -> None:
        self.rebuilding = False
        self.misses = 0

    async def after_miss(self) -> bool:
        self.misses += 1
        return self.rebuilding


async def test_answers_say_whether_the_cache_is_being_rebuilt(
    store: RedisItemStore, make_item: MakeItem
) -> None:
    settings = Settings(service_credentials={"orders": SecretStr("s3cret")})
    await store.put(make_item("MLB1"), expected=None)
    cache = Rebuilding()
    app = create_api(settings, store=store, search=store, ping=store.ping, cache=cache)
    async with TestClient(TestServer(app)) as client:
        found = await client.get("/catalog/items/MLB1", headers=AUTH)
        assert found.headers["Peepers-Cache-State"] == "ready"
        assert (await (await client.get("/readyz")).json())["status"] == "ready"

        cache.rebuilding = True
        page = await client.get(SEARCH, headers=AUTH)
        assert page.headers["Peepers-Cache-State"] == "rebuilding"
        missing = await client.get("/catalog/items/MLB404", headers=AUTH)
        assert missing.status == 404
        assert missing.headers["Peepers-Cache-State"] == "rebuilding"
        assert "being rebuilt" in (await missing.json())["detail"]
        assert cache.misses == 1  # the miss made the service check its cache
        ready = await client.get("/readyz")
        assert ready.status == 200  # flagged answers beat none
        assert (await ready.json())["status"] == "rebuilding"
