from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from peepers_catalog.domain import changes, is_newer, same_content, snapshot
from peepers_common.events import ItemPriceChanged, ItemSnapshot, ItemUpdated
from tests.unit.catalog.fakes import T0, ml_item

NOW = T0 + timedelta(hours=1)


def later(minutes: int = 1, **fields: Any) -> ItemSnapshot:
    return snapshot(ml_item(last_updated=T0 + timedelta(minutes=minutes), **fields))


def test_a_first_sighting_is_one_item_created_event_with_the_whole_snapshot() -> None:
    new = snapshot(ml_item())
    [event] = changes(None, new, now=NOW)
    assert event.type == "item.created"
    assert event.model_dump()["item"] == new.model_dump()


def test_a_price_change_is_exactly_one_price_changed_event() -> None:
    old = snapshot(ml_item())
    [event] = changes(old, later(price=59.9), now=NOW)
    assert isinstance(event, ItemPriceChanged)
    assert (event.old_price, event.new_price) == (Decimal("49.9"), Decimal("59.9"))


def test_each_kind_of_change_makes_its_own_event_type() -> None:
    old = snapshot(ml_item())
    cases: dict[str, dict[str, Any]] = {
        "item.stock_changed": {"available_quantity": 4},
        "item.paused": {"status": "paused"},
        "item.closed": {"status": "closed"},
        "item.updated": {"title": "Camiseta Nova"},
    }
    for expected, fields in cases.items():
        assert [e.type for e in changes(old, later(**fields), now=NOW)] == [expected]


def test_an_active_again_item_is_reactivated() -> None:
    paused = snapshot(ml_item(status="paused"))
    assert [e.type for e in changes(paused, later(status="active"), now=NOW)] == [
        "item.reactivated"
    ]


def test_an_update_lists_only_the_fields_that_changed() -> None:
    old = snapshot(ml_item())
    [event] = changes(old, later(title="Camiseta Nova", category_id="MLB1"), now=NOW)
    assert isinstance(event, ItemUpdated)
    assert set(event.changes) == {"title", "category_id"}
    assert event.changes["title"].old == "Camiseta Básica Algodão"


def test_a_status_without_its_own_event_is_reported_as_an_update() -> None:
    old = snapshot(ml_item())
    [event] = changes(old, later(status="under_review"), now=NOW)
    assert isinstance(event, ItemUpdated)
    assert event.changes["status"].new == "under_review"


def test_event_ids_are_the_same_when_the_same_version_is_seen_again() -> None:
    old, new = snapshot(ml_item()), later(price=10.0)
    first = changes(old, new, now=NOW)
    again = changes(old, new, now=NOW + timedelta(days=1))
    assert [e.event_id for e in first] == [e.event_id for e in again]
    assert first[0].event_id != changes(old, later(2, price=10.0), now=NOW)[0].event_id


def test_only_a_strictly_newer_version_may_replace_the_cache() -> None:
    cached = later(5)
    assert is_newer(later(6), cached)
    assert not is_newer(later(5), cached)
    assert not is_newer(later(4), cached)
    assert is_newer(later(1), None)


def test_content_ignores_the_version_stamp() -> None:
    assert same_content(later(1), later(9))
    assert not same_content(later(1), later(9, price=1.0))
