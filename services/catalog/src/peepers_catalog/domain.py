"""What a change of an item means: the snapshot Peepers keeps and the events a change makes.

Pure functions, no I/O. The rule that keeps the cache from going back in time lives
here too: a version whose ``last_updated`` is not newer than the cached one is ignored.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Final, TypeVar

from peepers_common.events import (
    FieldChange,
    ItemClosed,
    ItemCreated,
    ItemEvent,
    ItemPaused,
    ItemPriceChanged,
    ItemReactivated,
    ItemSnapshot,
    ItemSnapshotted,
    ItemStatusEvent,
    ItemStockChanged,
    ItemUpdated,
    item_event_id,
)
from peepers_common.ml.models import MlItem

E = TypeVar("E", bound=ItemEvent)

# Fields whose change is reported by its own event type; the rest go into item.updated.
_OWN_EVENT_FIELDS: Final = frozenset(
    {"price", "currency_id", "available_quantity", "status", "sub_status"}
)
# Fields that never make an event on their own: the version and derived counters.
_SILENT_FIELDS: Final = frozenset({"id", "seller_id", "last_updated", "sold_quantity"})
_STATUS_EVENTS: Final[dict[str, type[ItemStatusEvent]]] = {
    "paused": ItemPaused,
    "closed": ItemClosed,
    "active": ItemReactivated,
}


def snapshot(item: MlItem) -> ItemSnapshot:
    return ItemSnapshot(
        id=item.id,
        seller_id=item.seller_id,
        title=item.title,
        category_id=item.category_id,
        price=Decimal(str(item.price)),
        currency_id=item.currency_id,
        available_quantity=item.available_quantity,
        sold_quantity=item.sold_quantity,
        status=item.status,
        sub_status=tuple(item.sub_status),
        sku=item.sku,
        permalink=item.permalink,
        thumbnail=item.thumbnail,
        last_updated=item.last_updated,
    )


def is_newer(new: ItemSnapshot, cached: ItemSnapshot | None) -> bool:
    """Never go back in time: only a strictly newer ML version may replace the cache."""
    return cached is None or new.last_updated > cached.last_updated


def same_content(a: ItemSnapshot, b: ItemSnapshot) -> bool:
    """Equal in everything but the version stamp: writing ``b`` over ``a`` changes nothing."""
    # The fields as the models hold them (flat values): no model_dump per record.
    before, after = vars(a), vars(b)
    return all(before[name] == value for name, value in after.items() if name != "last_updated")


def changes(
    old: ItemSnapshot | None, new: ItemSnapshot, *, now: datetime, as_snapshot: bool = False
) -> list[ItemEvent]:
    """The domain events that turn ``old`` into ``new``, each with a deterministic id.

    One real change makes exactly one event: a price change is ``item.price_changed``
    only, a pause is ``item.paused`` only, and so on. ``sold_quantity`` moves with every
    sale and ships inside the other events' snapshots rather than as events of its own.
    An item not cached is ``item.created``, or ``item.snapshot`` with ``as_snapshot`` (met
    while rebuilding a lost cache: whether it was announced before cannot be proven).
    """
    if old is None:
        return [_event(ItemSnapshotted if as_snapshot else ItemCreated, new, now, item=new)]
    events: list[ItemEvent] = []
    if old.price != new.price or old.currency_id != new.currency_id:
        events.append(
            _event(
                ItemPriceChanged,
                new,
                now,
                old_price=old.price,
                new_price=new.price,
                currency_id=new.currency_id,
            )
        )
    if old.available_quantity != new.available_quantity:
        events.append(
            _event(
                ItemStockChanged,
                new,
                now,
                old_quantity=old.available_quantity,
                new_quantity=new.available_quantity,
            )
        )
    before, after = vars(old), vars(new)
    updated = {
        name: FieldChange(old=before[name], new=after[name])
        for name in after
        if name not in _OWN_EVENT_FIELDS | _SILENT_FIELDS and before[name] != after[name]
    }
    status_event = _STATUS_EVENTS.get(new.status)
    if old.status != new.status and status_event is not None:
        events.append(
            _event(
                status_event,
                new,
                now,
                old_status=old.status,
                new_status=new.status,
                sub_status=new.sub_status,
            )
        )
    else:
        for name in ("status", "sub_status"):
            if before[name] != after[name]:
                updated[name] = FieldChange(old=before[name], new=after[name])
    if updated:
        events.append(_event(ItemUpdated, new, now, changes=updated))
    return events


def _event(kind: type[E], source: ItemSnapshot, now: datetime, **fields: object) -> E:
    event_type = str(kind.model_fields["type"].default)
    return kind.model_validate(
        {
            "event_id": item_event_id(source.id, event_type, source.last_updated),
            "occurred_at": now,
            "seller_id": source.seller_id,
            "item_id": source.id,
            "last_updated": source.last_updated,
            **fields,
        }
    )
