from __future__ import annotations

import json

import pytest

from peepers_catalog.domain import snapshot
from peepers_catalog.handlers import Catalog
from peepers_catalog.ports import SyncState
from peepers_catalog.sync import SyncOptions, full_sync
from peepers_common.errors import MlUnavailable, ResourceBusy
from peepers_common.testing import InMemoryEventPublisher
from tests.unit.catalog.fakes import (
    FakeItemSource,
    InMemoryItemStore,
    InMemorySyncCheckpoints,
    ml_item,
)

SELLER = 7
OPTIONS = SyncOptions(chunk=20, apply_concurrency=4)


def ids(n: int) -> list[str]:
    return [f"MLB{1000000000 + i}" for i in range(n)]


@pytest.fixture
def ml() -> FakeItemSource:
    return FakeItemSource(ml_item(i, seller_id=SELLER) for i in ids(95))


@pytest.fixture
def checkpoints() -> InMemorySyncCheckpoints:
    return InMemorySyncCheckpoints()


async def test_a_full_sync_caches_every_item_and_announces_each_once(
    catalog: Catalog,
    store: InMemoryItemStore,
    publisher: InMemoryEventPublisher,
    checkpoints: InMemorySyncCheckpoints,
) -> None:
    seen: list[int] = []
    state = await full_sync(
        SELLER, catalog, checkpoints, options=OPTIONS, progress=lambda s: seen.append(s.next_index)
    )
    assert state.phase == "done"
    assert state.counts == {"created": 95}
    assert set(store.items) == set(ids(95))
    assert len(publisher.records) == 95
    assert seen[-1] == 95
    assert seen == sorted(seen)


async def test_a_second_sync_writes_and_announces_nothing(
    catalog: Catalog,
    store: InMemoryItemStore,
    publisher: InMemoryEventPublisher,
    checkpoints: InMemorySyncCheckpoints,
) -> None:
    await full_sync(SELLER, catalog, checkpoints, options=OPTIONS)
    state = await full_sync(SELLER, catalog, checkpoints, options=OPTIONS)
    assert state.counts == {"stale": 95}
    assert store.writes == 95
    assert len(publisher.records) == 95


async def test_multigets_stay_within_mls_twenty_ids(
    catalog: Catalog, ml: FakeItemSource, checkpoints: InMemorySyncCheckpoints
) -> None:
    await full_sync(SELLER, catalog, checkpoints, options=OPTIONS)
    assert ml.multiget_calls
    assert max(len(call) for call in ml.multiget_calls) <= OPTIONS.chunk


async def test_a_crashed_sync_resumes_from_its_checkpoint(
    catalog: Catalog,
    ml: FakeItemSource,
    publisher: InMemoryEventPublisher,
    checkpoints: InMemorySyncCheckpoints,
) -> None:
    ml.failing_multigets = {3}
    with pytest.raises(MlUnavailable):
        await full_sync(SELLER, catalog, checkpoints, options=OPTIONS)
    crashed = await checkpoints.load(SELLER)
    assert crashed is not None
    assert (crashed.phase, crashed.next_index) == ("applying", 40)
    ml.failing_multigets.clear()
    ml.multiget_calls.clear()
    state = await full_sync(SELLER, catalog, checkpoints, options=OPTIONS)
    assert state.phase == "done"
    assert ml.multiget_calls[0] == ids(95)[40:60]
    assert len({json.loads(r.value)["event_id"] for r in publisher.records}) == 95


async def test_items_that_vanished_from_ml_are_marked_gone(
    catalog: Catalog,
    ml: FakeItemSource,
    store: InMemoryItemStore,
    checkpoints: InMemorySyncCheckpoints,
) -> None:
    await full_sync(SELLER, catalog, checkpoints, options=OPTIONS)
    for item_id in ids(95)[:5]:
        del ml.items[item_id]
    state = await full_sync(SELLER, catalog, checkpoints, options=OPTIONS)
    assert state.counts["gone"] == 5
    assert store.gone == set(ids(95)[:5])


async def test_an_item_a_webhook_cached_after_the_scan_is_not_marked_gone(
    catalog: Catalog,
    ml: FakeItemSource,
    store: InMemoryItemStore,
    checkpoints: InMemorySyncCheckpoints,
) -> None:
    late = ml_item("MLB2000000000", seller_id=SELLER)

    def webhook_right_after_the_scan(state: SyncState) -> None:
        if state.phase == "applying" and late.id not in ml.items:
            ml.items[late.id] = late  # created at ML after the scan listed the ids...
            store.items[late.id] = snapshot(late)  # ...and cached by its webhook

    await full_sync(
        SELLER, catalog, checkpoints, options=OPTIONS, progress=webhook_right_after_the_scan
    )
    assert late.id in store.items
    assert not await store.is_gone(late.id)
    assert ml.multiget_calls[-1] == [late.id]


async def test_a_redelivered_seller_event_does_not_sync_twice(
    catalog: Catalog, ml: FakeItemSource, checkpoints: InMemorySyncCheckpoints
) -> None:
    options = SyncOptions(chunk=20, run_id="event-1")
    await full_sync(SELLER, catalog, checkpoints, options=options)
    calls = len(ml.multiget_calls)
    state = await full_sync(SELLER, catalog, checkpoints, options=options)
    assert state.phase == "done"
    assert len(ml.multiget_calls) == calls


async def test_a_sync_running_elsewhere_is_left_alone(
    catalog: Catalog, store: InMemoryItemStore, checkpoints: InMemorySyncCheckpoints
) -> None:
    checkpoints.claims[SELLER] = "cli-on-another-host"
    with pytest.raises(ResourceBusy, match="cli-on-another-host"):
        await full_sync(SELLER, catalog, checkpoints, options=OPTIONS)
    assert store.items == {}
    assert checkpoints.saves == 0


async def test_a_redelivered_seller_event_takes_over_the_claim_of_a_dead_worker(
    catalog: Catalog, checkpoints: InMemorySyncCheckpoints
) -> None:
    checkpoints.claims[SELLER] = "event-1"  # the worker that had it died mid-sync
    state = await full_sync(
        SELLER, catalog, checkpoints, options=SyncOptions(chunk=20, run_id="event-1")
    )
    assert state.phase == "done"
    assert checkpoints.claims == {}
