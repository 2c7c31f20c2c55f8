"""In-memory stand-ins for the catalog's ports (they behave like the real adapters)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from peepers_catalog.ports import CachedItem, SyncState
from peepers_common.errors import CacheUnavailable, MlNotFound, MlUnavailable
from peepers_common.events import ItemSnapshot
from peepers_common.ml import Multiget
from peepers_common.ml.models import MlItem

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def ml_item(item_id: str = "MLB1000000001", *, seller_id: int = 7, **fields: Any) -> MlItem:
    body: dict[str, Any] = {
        "id": item_id,
        "seller_id": seller_id,
        "title": "Camiseta Básica Algodão",
        "category_id": "MLB31447",
        "price": 49.9,
        "currency_id": "BRL",
        "available_quantity": 10,
        "sold_quantity": 3,
        "status": "active",
        "last_updated": T0,
        **fields,
    }
    return MlItem.model_validate(body)


class FakeItemSource:
    """ML's items for one process: edit ``items`` to change what ML answers."""

    def __init__(self, items: Iterable[MlItem] = ()) -> None:
        self.items: dict[str, MlItem] = {item.id: item for item in items}
        self.multiget_calls: list[list[str]] = []
        self.failure: Exception | None = None
        self.failing_multigets: set[int] = set()  # 1-based call numbers that fail (5xx)

    def edit(self, item_id: str, **fields: Any) -> MlItem:
        """A change at ML: the fields, and ``last_updated`` one minute later."""
        old = self.items[item_id]
        stamp = fields.pop("last_updated", old.last_updated + timedelta(minutes=1))
        self.items[item_id] = old.model_copy(update={**fields, "last_updated": stamp})
        return self.items[item_id]

    async def get_item(self, item_id: str, *, seller_id: int) -> MlItem:
        if self.failure is not None:
            raise self.failure
        if item_id not in self.items:
            msg = f"no item {item_id}"
            raise MlNotFound(msg, status=404)
        return self.items[item_id]

    async def multiget_items(self, ids: Sequence[str], *, seller_id: int) -> Multiget:
        self.multiget_calls.append(list(ids))
        if len(self.multiget_calls) in self.failing_multigets:
            msg = "ML answered 503"
            raise MlUnavailable(msg, status=503)
        found = [self.items[i] for i in ids if i in self.items]
        return Multiget(found, [i for i in ids if i not in self.items])

    async def iter_item_ids(
        self, *, seller_id: int, status: str | None = None
    ) -> AsyncIterator[str]:
        for item in list(self.items.values()):
            if item.seller_id == seller_id:
                yield item.id


class InMemoryItemStore:
    def __init__(self) -> None:
        self.items: dict[str, ItemSnapshot] = {}
        self.gone: set[str] = set()
        self.writes = 0
        self.interfere: ItemSnapshot | None = None  # written by "another replica" next put
        self.pending: dict[str, bytes] = {}
        self.fail_clear = False  # the process dies between the write and the clear

    async def get(self, item_id: str) -> ItemSnapshot | None:
        return self.items.get(item_id)

    async def get_many(self, item_ids: Iterable[str]) -> dict[str, ItemSnapshot]:
        return {i: self.items[i] for i in item_ids if i in self.items}

    async def cached(self, item_id: str) -> CachedItem:
        return CachedItem(self.items.get(item_id), item_id in self.gone, self.pending.get(item_id))

    async def clear_pending(self, item_id: str, pending: bytes) -> None:
        if self.fail_clear:
            msg = "Redis went away"
            raise CacheUnavailable(msg)
        if self.pending.get(item_id) == pending:
            del self.pending[item_id]

    async def put(
        self, item: ItemSnapshot, *, expected: datetime | None, pending: bytes | None = None
    ) -> bool:
        if self.interfere is not None:
            self.items[self.interfere.id], self.interfere = self.interfere, None
        cached = self.items.get(item.id)
        current = None if cached is None or item.id in self.gone else cached.last_updated
        if current != expected:
            return False
        self.items[item.id] = item
        self.gone.discard(item.id)
        if pending is not None:
            self.pending[item.id] = pending
        self.writes += 1
        return True

    async def seller_item_ids(self, seller_id: int) -> set[str]:
        return {
            i
            for i, item in self.items.items()
            if item.seller_id == seller_id and i not in self.gone
        }

    async def sample_item_ids(self, seller_id: int, count: int) -> list[str]:
        return sorted(await self.seller_item_ids(seller_id))[:count]

    async def mark_gone(self, seller_id: int, item_ids: Iterable[str]) -> int:
        fresh = {i for i in item_ids if i in self.items and i not in self.gone}
        self.gone |= fresh
        return len(fresh)

    async def is_gone(self, item_id: str) -> bool:
        return item_id in self.gone


class InMemorySyncCheckpoints:
    def __init__(self) -> None:
        self.states: dict[int, SyncState] = {}
        self.scanned: dict[int, list[str]] = {}
        self.saves = 0
        self.claims: dict[int, str] = {}

    async def load(self, seller_id: int) -> SyncState | None:
        state = self.states.get(seller_id)
        return None if state is None else dataclasses.replace(state, counts=dict(state.counts))

    async def save(self, state: SyncState) -> None:
        self.saves += 1
        self.states[state.seller_id] = dataclasses.replace(state, counts=dict(state.counts))

    async def reset_ids(self, seller_id: int) -> None:
        self.scanned.pop(seller_id, None)

    async def append_ids(self, seller_id: int, item_ids: list[str]) -> None:
        self.scanned.setdefault(seller_id, []).extend(item_ids)

    async def ids(self, seller_id: int, start: int, stop: int) -> list[str]:
        return self.scanned.get(seller_id, [])[start:stop]

    async def claim(self, seller_id: int, owner: str, ttl_s: float) -> str | None:
        holder = self.claims.setdefault(seller_id, owner)
        return None if holder == owner else holder

    async def release(self, seller_id: int, owner: str) -> None:
        if self.claims.get(seller_id) == owner:
            del self.claims[seller_id]
