"""The catalog's drift audit step, over fakes: drift found, counted by field, repaired."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY

from peepers_catalog.audit import CatalogAudit
from peepers_catalog.handlers import Catalog
from peepers_catalog.sync import SyncOptions, full_sync
from peepers_common.audit import audit_calls_per_s, drifted_fields
from peepers_common.events import CATALOG_EVENT
from peepers_common.settings import MlApiSettings, MlLimit
from peepers_common.testing import InMemoryEventPublisher
from tests.unit.catalog.fakes import (
    T0,
    FakeItemSource,
    InMemoryItemStore,
    InMemorySyncCheckpoints,
    ml_item,
)

SELLER = 7


class Roster:
    def __init__(self, *sellers: int) -> None:
        self.kept = list(sellers or (SELLER,))

    async def keep(self, seller_id: int) -> None:
        self.kept.append(seller_id)

    async def sellers(self) -> list[int]:
        return list(self.kept)


@pytest.fixture
def catalog(catalog: Catalog) -> Catalog:
    """The handlers' ports, an hour after ML's changes (all settled past the grace)."""
    return dataclasses.replace(catalog, clock=lambda: T0.timestamp() + 3600)


@pytest.fixture
def ml() -> FakeItemSource:
    return FakeItemSource(ml_item(f"MLB70000{i:02d}", seller_id=SELLER) for i in range(5))


def drift(field: str) -> float:
    return REGISTRY.get_sample_value("peepers_catalog_drift_total", {"field": field}) or 0.0


async def test_an_item_changed_without_a_notification_is_counted_and_repaired(
    catalog: Catalog,
    ml: FakeItemSource,
    store: InMemoryItemStore,
    publisher: InMemoryEventPublisher,
) -> None:
    await full_sync(SELLER, catalog, InMemorySyncCheckpoints(), options=SyncOptions(chunk=20))
    published = len(publisher.records)
    changed = ml.edit("MLB7000003", price=12.5, available_quantity=99)  # ML never notified
    price, stock = drift("price"), drift("available_quantity")

    audit = CatalogAudit(catalog, Roster(), rng=random.Random(1))
    assert await audit.step() == 1  # one multiget for the whole sample

    assert drift("price") == price + 1
    assert drift("available_quantity") == stock + 1
    cached = await store.get("MLB7000003")
    assert cached is not None
    assert cached.last_updated == changed.last_updated
    types = {CATALOG_EVENT.validate_json(r.value).type for r in publisher.records[published:]}
    assert types == {"item.price_changed", "item.stock_changed"}

    assert await audit.step() == 1
    assert drift("price") == price + 1  # repaired: nothing more to find


async def test_an_item_ml_no_longer_has_is_marked_gone(
    catalog: Catalog, ml: FakeItemSource, store: InMemoryItemStore
) -> None:
    await full_sync(SELLER, catalog, InMemorySyncCheckpoints(), options=SyncOptions(chunk=20))
    del ml.items["MLB7000001"]
    before = drift("gone")
    await CatalogAudit(catalog, Roster()).step()
    assert await store.is_gone("MLB7000001")
    assert drift("gone") == before + 1


async def test_an_empty_cache_costs_no_ml_call(catalog: Catalog, ml: FakeItemSource) -> None:
    assert await CatalogAudit(catalog, Roster()).step() == 0
    assert ml.multiget_calls == []


def test_the_audit_spends_its_share_of_the_apps_ml_limit() -> None:
    ml = MlApiSettings(app_limit=MlLimit(amount=6000, per_s=60))
    assert audit_calls_per_s(ml, 0.02) == pytest.approx(2.0)


def test_drifted_fields_ignore_what_they_are_told(ml: FakeItemSource) -> None:
    old = ml.items["MLB7000000"]
    new = ml.edit("MLB7000000", title="Outro")
    assert drifted_fields(old, new, ignore={"last_updated"}) == ["title"]


async def test_a_seller_connected_after_the_first_step_is_audited_at_once(
    catalog: Catalog, ml: FakeItemSource
) -> None:
    roster = Roster()
    roster.kept.clear()
    audit = CatalogAudit(catalog, roster)
    assert await audit.step() == 0  # nobody connected yet
    await full_sync(SELLER, catalog, InMemorySyncCheckpoints(), options=SyncOptions(chunk=20))
    await roster.keep(SELLER)
    assert await audit.step() == 1


async def test_an_item_ml_changed_just_now_is_left_to_its_webhook(
    catalog: Catalog, ml: FakeItemSource, store: InMemoryItemStore
) -> None:
    await full_sync(SELLER, catalog, InMemorySyncCheckpoints(), options=SyncOptions(chunk=20))
    now = catalog.clock()
    ml.edit("MLB7000002", price=1.0, last_updated=datetime.fromtimestamp(now - 5, tz=UTC))
    before = drift("price")
    await CatalogAudit(catalog, Roster(), grace_s=30).step()
    assert drift("price") == before  # its notification is probably on its way
    cached = await store.get("MLB7000002")
    assert cached is not None
    assert cached.price != 1
