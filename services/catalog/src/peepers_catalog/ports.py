"""The small ports catalog's handlers talk through; adapters live in ``adapters/``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal, Protocol

from peepers_common.events import ItemSnapshot
from peepers_common.ml import Multiget
from peepers_common.ml.models import MlItem

SortKey = Literal["price", "-price", "updated", "-updated", "sold", "-sold"]


class ItemSource(Protocol):
    """The part of `peepers_common.ml.MlApi` the catalog reads items through."""

    async def get_item(self, item_id: str, *, seller_id: int) -> MlItem: ...

    async def multiget_items(self, ids: Sequence[str], *, seller_id: int) -> Multiget: ...

    def iter_item_ids(self, *, seller_id: int, status: str | None = None) -> AsyncIterator[str]: ...


@dataclass(frozen=True)
class CachedItem:
    """What the cache holds for an item: its snapshot, the gone flag, unsent events."""

    snapshot: ItemSnapshot | None
    gone: bool = False
    # The encoded domain events of the last write, until they are published (the outbox).
    pending: bytes | None = None


class ItemStore(Protocol):
    """The item cache and its search index, written together so they never disagree."""

    async def get(self, item_id: str) -> ItemSnapshot | None: ...

    async def cached(self, item_id: str) -> CachedItem:
        """Snapshot, gone flag and pending events in one read."""
        ...

    async def get_many(self, item_ids: Iterable[str]) -> dict[str, ItemSnapshot]: ...

    async def put(
        self, item: ItemSnapshot, *, expected: datetime | None, pending: bytes | None = None
    ) -> bool:
        """Write ``item`` and its index entries atomically, compare-and-set on the version.

        The write happens only while the cached copy's ``last_updated`` still equals
        ``expected`` (``None``: nothing cached, or the item is marked gone). Returns False,
        changing nothing, when another writer got there first; the caller re-reads.
        Writing the same item twice leaves the same state (idempotent). ``pending`` (the
        write's encoded events) is stored with it, atomically, until `clear_pending`.
        """
        ...

    async def clear_pending(self, item_id: str, pending: bytes) -> None:
        """Forget the pending events once published, if they are still these ones."""
        ...

    async def seller_item_ids(self, seller_id: int) -> set[str]:
        """Ids of the seller's cached items that are not marked gone."""
        ...

    async def sample_item_ids(self, seller_id: int, count: int) -> list[str]:
        """Up to ``count`` distinct live items of the seller, picked at random."""
        ...

    async def mark_gone(self, seller_id: int, item_ids: Iterable[str]) -> int:
        """Flag items that vanished from ML: out of search and facets, kept for reads.

        Returns how many were newly marked. A later ``put`` of the item clears the flag.
        """
        ...

    async def is_gone(self, item_id: str) -> bool: ...


class SellerRoster(Protocol):
    """The sellers whose items this catalog keeps: what a rebuild after a loss resyncs.

    It lives outside the cache (a loss must not take it along), per cache namespace.
    """

    async def keep(self, seller_id: int) -> None:
        """Remember the seller, durably, before its items are synced."""
        ...

    async def sellers(self) -> list[int]: ...


@dataclass(frozen=True)
class SearchQuery:
    seller_id: int
    q: str | None = None
    status: str | None = None
    category: str | None = None
    price_min: Decimal | None = None
    price_max: Decimal | None = None
    sort: SortKey = "-updated"
    limit: int = 50
    cursor: str | None = None


@dataclass(frozen=True)
class SearchPage:
    items: list[ItemSnapshot]
    total: int
    next_cursor: str | None
    facets: Mapping[str, Mapping[str, int]] = field(default_factory=dict)


class ItemSearch(Protocol):
    """Search over one seller's items; Redis today, a search engine tomorrow."""

    async def search(self, query: SearchQuery) -> SearchPage: ...


@dataclass
class SyncState:
    """Where a seller's full sync is: ``scanning`` ids, ``applying`` them, or ``done``."""

    seller_id: int
    run_id: str
    phase: Literal["scanning", "applying", "done"]
    total: int = 0
    next_index: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    started_at: float = 0.0
    finished_at: float | None = None


class SyncCheckpoints(Protocol):
    """A full sync's durable progress, so a crashed sync resumes where it stopped."""

    async def load(self, seller_id: int) -> SyncState | None: ...

    async def save(self, state: SyncState) -> None: ...

    async def reset_ids(self, seller_id: int) -> None: ...

    async def append_ids(self, seller_id: int, item_ids: list[str]) -> None: ...

    async def ids(self, seller_id: int, start: int, stop: int) -> list[str]:
        """Scanned ids ``[start, stop)`` in scan order."""
        ...

    async def claim(self, seller_id: int, owner: str, ttl_s: float) -> str | None:
        """Hold (or keep holding) the seller's sync for ``owner`` for ``ttl_s`` seconds.

        Returns None when ``owner`` holds it now, else the other holder's name.
        """
        ...

    async def release(self, seller_id: int, owner: str) -> None:
        """Let go of the seller's sync if ``owner`` still holds it."""
        ...
