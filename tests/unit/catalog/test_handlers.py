from __future__ import annotations

import json
from datetime import timedelta

import pytest
from pydantic import ValidationError

from peepers_catalog.domain import snapshot
from peepers_catalog.handlers import (
    Catalog,
    InvalidItemNotification,
    Outcome,
    apply_item,
    item_changed,
    item_of_record_key,
    on_item_notification,
)
from peepers_common.consuming import InboundRecord
from peepers_common.errors import CacheUnavailable, PublishError
from peepers_common.notifications import Notification, encode_value
from peepers_common.testing import InMemoryEventPublisher
from tests.unit.catalog.fakes import T0, FakeItemSource, InMemoryItemStore, ml_item

ITEM = "MLB1000000001"
SELLER = 7


@pytest.fixture
def ml() -> FakeItemSource:
    return FakeItemSource([ml_item(ITEM, seller_id=SELLER)])


def notification(resource: str = f"/items/{ITEM}", user_id: int = SELLER) -> Notification:
    return Notification.model_validate(
        {"resource": resource, "user_id": user_id, "topic": "items", "application_id": 1}
    )


def types(publisher: InMemoryEventPublisher) -> list[str]:
    return [json.loads(r.value)["type"] for r in publisher.records]


class TestItemNotifications:
    async def test_a_new_item_is_cached_and_announced(
        self, catalog: Catalog, store: InMemoryItemStore, publisher: InMemoryEventPublisher
    ) -> None:
        assert await on_item_notification(notification(), catalog) == Outcome.CREATED
        assert (await store.get(ITEM)) is not None
        assert types(publisher) == ["item.created"]
        assert publisher.records[0].key == f"{SELLER}:{ITEM}".encode()

    async def test_a_redelivered_notification_changes_nothing(
        self, catalog: Catalog, store: InMemoryItemStore, publisher: InMemoryEventPublisher
    ) -> None:
        await on_item_notification(notification(), catalog)
        assert await on_item_notification(notification(), catalog) == Outcome.STALE
        assert store.writes == 1
        assert types(publisher) == ["item.created"]

    async def test_a_prices_resource_refreshes_the_item(
        self, catalog: Catalog, ml: FakeItemSource, publisher: InMemoryEventPublisher
    ) -> None:
        await on_item_notification(notification(), catalog)
        ml.edit(ITEM, price=10.0)
        outcome = await on_item_notification(notification(f"items/{ITEM}/prices"), catalog)
        assert outcome == Outcome.UPDATED
        assert types(publisher) == ["item.created", "item.price_changed"]

    async def test_a_newer_version_with_the_same_content_is_a_counted_skip(
        self, catalog: Catalog, ml: FakeItemSource, store: InMemoryItemStore
    ) -> None:
        await on_item_notification(notification(), catalog)
        ml.edit(ITEM)
        assert await on_item_notification(notification(), catalog) == Outcome.UNCHANGED
        assert store.writes == 1

    async def test_an_item_ml_no_longer_has_is_marked_gone(
        self, catalog: Catalog, ml: FakeItemSource, store: InMemoryItemStore
    ) -> None:
        await on_item_notification(notification(), catalog)
        del ml.items[ITEM]
        assert await on_item_notification(notification(), catalog) == Outcome.GONE
        assert await store.is_gone(ITEM)

    @pytest.mark.parametrize("resource", ["/orders/123", "/items/", "/items/not-an-id"])
    async def test_a_resource_that_is_not_an_item_is_refused(
        self, catalog: Catalog, resource: str
    ) -> None:
        with pytest.raises(InvalidItemNotification):
            await on_item_notification(notification(resource), catalog)

    async def test_an_item_of_another_seller_is_refused_and_not_cached(
        self, catalog: Catalog, store: InMemoryItemStore
    ) -> None:
        with pytest.raises(InvalidItemNotification):
            await on_item_notification(notification(user_id=SELLER + 1), catalog)
        assert store.items == {}


class TestApplyItem:
    async def test_an_older_version_never_replaces_a_newer_one(
        self, catalog: Catalog, store: InMemoryItemStore, publisher: InMemoryEventPublisher
    ) -> None:
        newer = ml_item(ITEM, seller_id=SELLER, price=5.0, last_updated=T0 + timedelta(hours=1))
        await apply_item(newer, catalog)
        assert await apply_item(ml_item(ITEM, seller_id=SELLER), catalog) == Outcome.STALE
        cached = await store.get(ITEM)
        assert cached is not None
        assert cached.price == 5
        assert types(publisher) == ["item.created"]

    async def test_a_lost_compare_and_set_recomputes_against_the_winner(
        self, catalog: Catalog, store: InMemoryItemStore, publisher: InMemoryEventPublisher
    ) -> None:
        await apply_item(ml_item(ITEM, seller_id=SELLER), catalog)
        winner = ml_item(ITEM, seller_id=SELLER, price=1.0, last_updated=T0 + timedelta(hours=2))
        store.interfere = snapshot(winner)
        mine = ml_item(ITEM, seller_id=SELLER, price=2.0, last_updated=T0 + timedelta(hours=1))
        assert await apply_item(mine, catalog) == Outcome.STALE
        cached = await store.get(ITEM)
        assert cached is not None
        assert cached.price == 1

    async def test_events_kafka_refused_stay_pending_and_go_out_on_the_retry(
        self, catalog: Catalog, store: InMemoryItemStore, publisher: InMemoryEventPublisher
    ) -> None:
        publisher.failure = PublishError("Kafka is down")
        with pytest.raises(PublishError):
            await apply_item(ml_item(ITEM, seller_id=SELLER), catalog)
        assert ITEM in store.items
        assert ITEM in store.pending
        publisher.failure = None
        assert await apply_item(ml_item(ITEM, seller_id=SELLER), catalog) == Outcome.STALE
        assert types(publisher) == ["item.created"]
        assert store.pending == {}

    async def test_a_crash_before_the_outbox_is_cleared_republishes_the_same_event_ids(
        self, catalog: Catalog, store: InMemoryItemStore, publisher: InMemoryEventPublisher
    ) -> None:
        store.fail_clear = True
        with pytest.raises(CacheUnavailable):
            await apply_item(ml_item(ITEM, seller_id=SELLER), catalog)
        store.fail_clear = False
        await apply_item(ml_item(ITEM, seller_id=SELLER), catalog)
        ids = [json.loads(r.value)["event_id"] for r in publisher.records]
        assert len(ids) == 2
        assert len(set(ids)) == 1

    async def test_events_describe_the_change_from_the_version_really_replaced(
        self, catalog: Catalog, store: InMemoryItemStore, publisher: InMemoryEventPublisher
    ) -> None:
        await apply_item(ml_item(ITEM, seller_id=SELLER, price=10.0), catalog)
        # Another writer (a full sync) caches a newer price between our read and write.
        store.interfere = snapshot(
            ml_item(ITEM, seller_id=SELLER, price=20.0, last_updated=T0 + timedelta(hours=1))
        )
        later = ml_item(ITEM, seller_id=SELLER, price=30.0, last_updated=T0 + timedelta(hours=2))
        assert await apply_item(later, catalog) == Outcome.UPDATED
        [change] = [json.loads(r.value) for r in publisher.records][1:]
        assert (change["old_price"], change["new_price"]) == ("20.0", "30.0")

    async def test_a_gone_item_that_comes_back_is_cached_again(
        self, catalog: Catalog, store: InMemoryItemStore
    ) -> None:
        await apply_item(ml_item(ITEM, seller_id=SELLER), catalog)
        await store.mark_gone(SELLER, [ITEM])
        assert await apply_item(ml_item(ITEM, seller_id=SELLER), catalog) == Outcome.UPDATED
        assert not await store.is_gone(ITEM)


@pytest.mark.parametrize(
    ("key", "item"),
    [
        (b"7:/items/MLB1000000001", b"MLB1000000001"),
        (b"7:/items/MLB1000000001/prices", b"MLB1000000001"),
        (b"7:/orders/123", b"7:/orders/123"),
        (None, None),
    ],
)
def test_items_and_prices_records_of_one_item_share_a_batch_key(
    key: bytes | None, item: bytes | None
) -> None:
    assert item_of_record_key(key) == item


def _record(resource: str, user_id: int = SELLER) -> InboundRecord:
    value = encode_value(notification(resource, user_id).model_dump(by_alias=True), T0)
    return InboundRecord.from_kafka("ml.notifications.items", 0, 0, None, value, [])


def test_items_and_prices_records_of_one_item_ask_for_one_read_and_coalesce() -> None:
    assert item_changed(_record(f"/items/{ITEM}")) == (SELLER, ITEM)
    assert item_changed(_record(f"/items/{ITEM}/prices")) == (SELLER, ITEM)
    assert item_changed(_record(f"/items/{ITEM}", user_id=8)) == (8, ITEM)  # not coalesced
    with pytest.raises(InvalidItemNotification):
        item_changed(_record("/orders/123"))  # handled alone, then dead-lettered
    with pytest.raises(ValidationError):
        item_changed(InboundRecord.from_kafka("t", 0, 0, None, b"\xffnot json", []))
