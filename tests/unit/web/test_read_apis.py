"""The read-API adapters against the real orders and catalog APIs (in-memory stores behind)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from peepers_auth.web.adapters.read_apis import HttpOrders, ReadApiClient
from peepers_auth.web.ports import OrderFilter, ServiceNotAvailable
from peepers_auth.web.settings import ReadApi
from peepers_common.events import OrderLine, OrderSummary
from peepers_orders.api import create_api
from peepers_orders.ports import CachedOrder, DayFigures, OrderPage, OrderQuery, StoredOrder
from peepers_orders.settings import Settings as OrdersSettings
from tests.unit.web.fakes import OTHER, SELLER

SECRET = "web-read-secret-0123456789"  # noqa: S105 - a test credential
AT = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _cached(order_id: int, seller_id: int) -> CachedOrder:
    summary = OrderSummary(
        order_id=order_id,
        state="paid",
        ml_status="paid",
        buyer_id=42,
        currency_id="BRL",
        total_amount=Decimal("99.90"),
        lines=(OrderLine(item_id="MLB1", title="Caneca", quantity=1, unit_price=Decimal("99.90")),),
        date_created=AT,
    )
    return CachedOrder(seller_id=seller_id, summary=summary)


class _Store:
    def __init__(self) -> None:
        self.orders = {1: _cached(1, SELLER), 2: _cached(2, OTHER)}
        self.queries: list[OrderQuery] = []

    async def load(self, order_id: int) -> StoredOrder:
        return StoredOrder(order=self.orders.get(order_id), version=1)

    async def search(self, query: OrderQuery) -> OrderPage:
        self.queries.append(query)
        found = [o for o in self.orders.values() if o.seller_id == query.seller_id]
        return OrderPage(found, next_cursor="c2")

    async def pack(self, pack_id: int) -> None:
        return None

    async def get_many(self, order_ids: Sequence[int]) -> list[CachedOrder]:
        return []


class _Analytics:
    async def days(self, seller_id: int, first: date, last: date) -> list[DayFigures]:
        return [DayFigures(day=last, orders=3, revenue={"BRL": Decimal("120.50")})]


async def _ready() -> tuple[bool, dict[str, Any]]:
    return True, {}


@pytest.fixture
async def orders_api() -> AsyncIterator[tuple[HttpOrders, _Store]]:
    store = _Store()
    settings = OrdersSettings(service_credentials={"web": SecretStr(SECRET)})
    app = create_api(settings, store=store, analytics_store=_Analytics(), ready=_ready)  # type: ignore[arg-type]
    async with TestServer(app) as server, aiohttp.ClientSession() as http:
        client = ReadApiClient(
            "orders",
            ReadApi(base_url=str(server.make_url(""))),
            http,
            aiohttp.encode_basic_auth("web", SECRET),
        )
        yield HttpOrders(client), store


class TestOrdersApi:
    async def test_search_sends_the_filters_and_reads_the_orders(
        self, orders_api: tuple[HttpOrders, _Store]
    ) -> None:
        orders, store = orders_api
        found = await orders.search(
            SELLER, OrderFilter(state="paid", buyer_id=42, created_from=AT, created_to=AT)
        )
        assert [o.order_id for o in found.orders] == [1]
        assert found.orders[0].titles == ("Caneca",)
        assert found.next_cursor == "c2"
        [query] = store.queries
        assert (query.state, query.buyer_id, query.created_from) == ("paid", 42, AT)

    async def test_an_order_of_another_seller_is_none_although_the_api_serves_it(
        self, orders_api: tuple[HttpOrders, _Store]
    ) -> None:
        orders, _ = orders_api
        assert await orders.get(SELLER, 2) is None
        assert await orders.get(SELLER, 3) is None
        mine = await orders.get(SELLER, 1)
        assert mine is not None
        assert mine.order.total_amount == Decimal("99.90")

    async def test_sales_by_day(self, orders_api: tuple[HttpOrders, _Store]) -> None:
        orders, _ = orders_api
        [day] = await orders.sales(SELLER, date(2026, 11, 8), date(2026, 12, 7))
        assert (day.day, day.orders, day.revenue) == (
            date(2026, 12, 7),
            3,
            {"BRL": Decimal("120.50")},
        )

    async def test_a_wrong_credential_or_no_service_is_not_available(self) -> None:
        async with aiohttp.ClientSession() as http:
            missing = HttpOrders(ReadApiClient("orders", None, http, "Basic x"))
            with pytest.raises(ServiceNotAvailable):
                await missing.search(SELLER, OrderFilter())
            down = HttpOrders(
                ReadApiClient("orders", ReadApi(base_url="http://127.0.0.1:9"), http, "Basic x")
            )
            with pytest.raises(ServiceNotAvailable):
                await down.sales(SELLER, date(2026, 12, 1), date(2026, 12, 7))
