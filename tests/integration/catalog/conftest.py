from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import redis.asyncio as aioredis

from peepers_catalog.adapters import RedisItemStore
from peepers_catalog.settings import Settings
from peepers_common.events import ItemSnapshot
from peepers_common.namespaces import Namespace, connect_redis
from tests.support import unique

SELLER = 1001
T0 = datetime(2025, 3, 1, 12, tzinfo=UTC)

MakeItem = Callable[..., ItemSnapshot]


@pytest.fixture
async def catalog_redis() -> AsyncIterator[aioredis.Redis]:
    """Redis as the catalog ACL user, as the service logs in."""
    client = connect_redis(Settings().redis)
    yield client
    await client.aclose()


@pytest.fixture
def store(catalog_redis: aioredis.Redis) -> RedisItemStore:
    return RedisItemStore(catalog_redis, Namespace("catalog", scope=unique("catalog")))


@pytest.fixture
def make_item() -> MakeItem:
    def make(item_id: str, **fields: Any) -> ItemSnapshot:
        values: dict[str, Any] = {
            "id": item_id,
            "seller_id": SELLER,
            "title": f"Item {item_id}",
            "category_id": "MLB1000",
            "price": Decimal("10.00"),
            "currency_id": "BRL",
            "available_quantity": 5,
            "sold_quantity": 0,
            "status": "active",
            "sku": None,
            "last_updated": T0,
        }
        minutes = fields.pop("minutes", 0)
        values.update(fields)
        values["last_updated"] = values["last_updated"] + timedelta(minutes=minutes)
        return ItemSnapshot.model_validate(values)

    return make
