"""The catalog's rebuild after a lost cache: kept sellers resynced, items told as snapshots."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest

from peepers_catalog.domain import snapshot
from peepers_catalog.handlers import Catalog, Outcome, apply_item
from peepers_catalog.rebuild import rebuild_catalog
from peepers_catalog.sync import SyncOptions, full_sync
from peepers_common.errors import ReauthRequired, ResourceBusy, TokenError, TokenUnavailable
from peepers_common.events import CATALOG_EVENT, ItemSnapshotted
from peepers_common.testing import InMemoryEventPublisher
from tests.unit.catalog.fakes import (
    FakeItemSource,
    InMemoryItemStore,
    InMemorySyncCheckpoints,
    ml_item,
)

SELLERS = (7, 8)
OPTIONS = SyncOptions(chunk=20, apply_concurrency=4)


class Rebuilding:
    """A `CacheEpoch` that says what the test sets, and counts the misses it was told of."""

    def __init__(self, rebuilding: bool) -> None:
        self.rebuilding = rebuilding
        self.misses = 0

    async def after_miss(self) -> bool:
        self.misses += 1
        return self.rebuilding


class Roster:
    def __init__(self, *sellers: int) -> None:
        self.kept = list(sellers)

    async def keep(self, seller_id: int) -> None:
        self.kept.append(seller_id)

    async def sellers(self) -> list[int]:
        return list(self.kept)


@pytest.fixture
def ml() -> FakeItemSource:
    return FakeItemSource(
        ml_item(f"MLB{seller}00000{i:02d}", seller_id=seller)
        for seller in SELLERS
        for i in range(30)
    )


def types(publisher: InMemoryEventPublisher) -> list[str]:
    return [CATALOG_EVENT.validate_json(r.value).type for r in publisher.records]


async def test_an_item_met_while_rebuilding_is_a_snapshot_never_created_again(
    catalog: Catalog, ml: FakeItemSource, publisher: InMemoryEventPublisher
) -> None:
    epoch = Rebuilding(True)
    rebuilding = dataclasses.replace(catalog, epoch=epoch)
    item = ml.items["MLB70000000"]
    assert await apply_item(item, rebuilding) is Outcome.SNAPSHOT
    assert types(publisher) == ["item.snapshot"]
    event = CATALOG_EVENT.validate_json(publisher.records[0].value)
    assert isinstance(event, ItemSnapshotted)
    assert event.item == snapshot(item)
    assert epoch.misses == 1
    # A later change of the item is a change, whether or not the rebuild still runs.
    assert await apply_item(ml.edit(item.id, price=10.0), rebuilding) is Outcome.UPDATED
    assert types(publisher) == ["item.snapshot", "item.price_changed"]
    assert epoch.misses == 1  # a cached item is no miss


async def test_an_item_met_with_the_cache_intact_is_created(
    catalog: Catalog, ml: FakeItemSource, publisher: InMemoryEventPublisher
) -> None:
    steady = dataclasses.replace(catalog, epoch=Rebuilding(False))
    assert await apply_item(ml.items["MLB70000000"], steady) is Outcome.CREATED
    assert types(publisher) == ["item.created"]


async def test_a_rebuild_resyncs_every_kept_seller_as_snapshots(
    catalog: Catalog, store: InMemoryItemStore, publisher: InMemoryEventPublisher
) -> None:
    rebuilding = dataclasses.replace(catalog, epoch=Rebuilding(True))
    checkpoints = InMemorySyncCheckpoints()
    resync = await rebuild_catalog("e1", Roster(*SELLERS), rebuilding, checkpoints, OPTIONS)
    assert resync is not None
    await resync()
    assert len(store.items) == 60
    assert set(types(publisher)) == {"item.snapshot"}
    assert {state.run_id for state in checkpoints.states.values()} == {"rebuild-e1"}


async def test_a_new_namespace_has_nothing_to_resync(catalog: Catalog) -> None:
    checkpoints = InMemorySyncCheckpoints()
    assert await rebuild_catalog("e1", Roster(), catalog, checkpoints, OPTIONS) is None


async def test_a_retried_rebuild_skips_the_sellers_it_finished(
    catalog: Catalog, ml: FakeItemSource, publisher: InMemoryEventPublisher
) -> None:
    rebuilding = dataclasses.replace(catalog, epoch=Rebuilding(True))
    checkpoints = InMemorySyncCheckpoints()
    checkpoints.claims[8] = "the seller agent"  # seller 8's connect sync runs elsewhere
    resync = await rebuild_catalog("e1", Roster(*SELLERS), rebuilding, checkpoints, OPTIONS)
    assert resync is not None
    with pytest.raises(ResourceBusy, match=r"\[8\]"):
        await resync()
    del checkpoints.claims[8]
    calls = len(ml.multiget_calls)
    await resync()  # the guard retries: seller 7 is done, only seller 8 is synced
    assert all(call[0].startswith("MLB8") for call in ml.multiget_calls[calls:])
    assert len(publisher.records) == 60


class RefusingSeller(FakeItemSource):
    """ML as seen with no token for ``refused``: its authorization gone (`ReauthRequired`)
    or the token source down for now (`TokenUnavailable`)."""

    def __init__(
        self, source: FakeItemSource, refused: int | None, error: type[TokenError] = ReauthRequired
    ) -> None:
        super().__init__(source.items.values())
        self.refused = refused
        self.error = error

    def iter_item_ids(self, *, seller_id: int, status: str | None = None) -> AsyncIterator[str]:
        if seller_id == self.refused:
            msg = "no token for the seller"
            raise self.error(msg, seller_id=seller_id)
        return super().iter_item_ids(seller_id=seller_id, status=status)


async def test_a_seller_that_can_no_longer_be_read_is_skipped(
    catalog: Catalog, ml: FakeItemSource, store: InMemoryItemStore
) -> None:
    refusing = dataclasses.replace(catalog, ml=RefusingSeller(ml, 8), epoch=Rebuilding(True))
    resync = await rebuild_catalog(
        "e1", Roster(*SELLERS), refusing, InMemorySyncCheckpoints(), OPTIONS
    )
    assert resync is not None
    await resync()  # no error: retrying would fail the same way; the next login syncs it
    assert {item.seller_id for item in store.items.values()} == {7}


async def test_a_seller_unreadable_for_now_fails_the_attempt_and_its_retry_syncs_them(
    catalog: Catalog, ml: FakeItemSource, store: InMemoryItemStore
) -> None:
    down = RefusingSeller(ml, 8, TokenUnavailable)
    refusing = dataclasses.replace(catalog, ml=down, epoch=Rebuilding(True))
    resync = await rebuild_catalog(
        "e1", Roster(*SELLERS), refusing, InMemorySyncCheckpoints(), OPTIONS
    )
    assert resync is not None
    with pytest.raises(TokenUnavailable):
        await resync()  # not skipped: skipping would leave seller 8 unmirrored
    down.refused = None  # auth answers again; the guard retries the rebuild
    await resync()
    assert {item.seller_id for item in store.items.values()} == {7, 8}


async def test_a_first_sync_after_seller_connected_says_created(
    catalog: Catalog, publisher: InMemoryEventPublisher
) -> None:
    steady = dataclasses.replace(catalog, epoch=Rebuilding(False))
    await full_sync(7, steady, InMemorySyncCheckpoints(), options=OPTIONS)
    assert set(types(publisher)) == {"item.created"}
