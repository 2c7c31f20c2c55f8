"""The read API's edges: credentials, bad parameters, unknown orders, probes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from peepers_orders.api import create_api
from peepers_orders.ports import DayFigures
from peepers_orders.settings import Settings
from tests.unit.orders.fakes import InMemoryAnalytics, InMemoryOrderStore

AUTH = {"Authorization": aiohttp.encode_basic_auth("reader", "s3cret")}


class _Days(InMemoryAnalytics):
    async def days(self, seller_id: int, first: date, last: date) -> list[DayFigures]:
        return [DayFigures(day=first, orders=2, paid_to_shipped_s=(60.0, 180.0))]


@pytest.fixture
async def client() -> AsyncIterator[TestClient[Any, Any]]:
    async def ready() -> tuple[bool, dict[str, Any]]:
        return True, {"status": "ready"}

    settings = Settings(service_credentials={"reader": SecretStr("s3cret")})
    app = create_api(settings, store=InMemoryOrderStore(), analytics_store=_Days(), ready=ready)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def test_reads_need_service_credentials_and_probes_do_not(client) -> None:
    async with client.get("/orders/orders/1") as response:
        assert response.status == 401
        assert (await response.json())["error"] == "unauthorized"
    for path in ("/healthz", "/readyz", "/metrics"):
        async with client.get(path) as response:
            assert response.status == 200, path


async def test_an_unknown_order_is_404_and_bad_parameters_are_400(client) -> None:
    async with client.get("/orders/orders/42", headers=AUTH) as response:
        assert (response.status, (await response.json())["error"]) == (404, "not_found")
    for query in ("limit=abc", "from=yesterday", "from=2026-11-01T00:00:00"):
        async with client.get(f"/orders/sellers/7/orders?{query}", headers=AUTH) as response:
            assert response.status == 400, query
    async with client.get(
        "/orders/sellers/7/analytics?from=2026-02-01&to=2026-01-01", headers=AUTH
    ) as response:
        assert response.status == 400


async def test_analytics_give_each_day_and_the_range_with_percentiles(client) -> None:
    url = "/orders/sellers/7/analytics?from=2026-11-02&to=2026-11-02"
    async with client.get(url, headers=AUTH) as response:
        body = await response.json()
    assert body["total"]["orders"] == 2
    assert body["total"]["paid_to_shipped"] == {"count": 2, "median_s": 60.0, "p90_s": 180.0}
    assert [d["day"] for d in body["days"]] == ["2026-11-02"]
