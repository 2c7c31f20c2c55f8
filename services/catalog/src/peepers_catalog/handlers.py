"""Catalog use cases: plain async functions over the ports in `Catalog`.

Order of effects for one change, and why (a transactional outbox): the cache write is a
compare-and-set on the version the change's events were computed from, and it stores
those events in the item's record in the same atomic step. Only the writer that wins
publishes them, then clears them. So the events always describe the change from the
version really replaced, even when a full sync, the ``items`` and the ``items_prices``
records race on one item (the loser re-reads and recomputes); and a crash after the write
leaves the events pending in the cache, where the next handling of the item (the
redelivered record) publishes them first, with the same deterministic ids (consumers
deduplicate on ``event_id``).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from pydantic import TypeAdapter

from peepers_catalog import metrics
from peepers_catalog.domain import changes, is_newer, same_content, snapshot
from peepers_catalog.ports import STEADY_CACHE, CacheEpoch, ItemSource, ItemStore
from peepers_common.errors import CacheUnavailable, MlNotFound, PeepersError
from peepers_common.events import (
    CatalogEvent,
    ItemEvent,
    event_headers,
    item_event_key,
    occurred,
)
from peepers_common.kafka import EventPublisher
from peepers_common.ml.models import MlItem
from peepers_common.notifications import Notification

log = logging.getLogger(__name__)

# /items/MLB123, /items/MLB123/prices, /items/MLB123/price_to_win, ... (FACTS.md 1.4)
_ITEM_RESOURCE: Final = re.compile(r"^/items/([A-Z]{3}\d{1,20})(?:/[A-Za-z0-9_/-]*)?$")
_ITEM_IN_KEY: Final = re.compile(rb":/items/([A-Z]{3}\d{1,20})(?:/|$)")
_CAS_ATTEMPTS: Final = 5
_PENDING: Final = TypeAdapter(list[CatalogEvent])


class InvalidItemNotification(PeepersError, ValueError):
    """A notification on an items topic that does not name an item of its seller."""


class Outcome(StrEnum):
    CREATED = "created"
    SNAPSHOT = "snapshot"  # first met while rebuilding a lost cache: item.snapshot
    UPDATED = "updated"
    UNCHANGED = "unchanged"  # same content, newer stamp: nothing to write or tell
    STALE = "stale"  # not newer than the cached version: never go back in time
    GONE = "gone"  # ML no longer has the item


@dataclass(frozen=True)
class Catalog:
    """Everything the handlers need, built by the composition root (or a test)."""

    ml: ItemSource
    store: ItemStore
    publisher: EventPublisher
    events_topic: str
    clock: Callable[[], float] = time.time
    # Says whether the cache is being rebuilt (new items are then snapshots); checked
    # again whenever an item is not cached. The default never rebuilds (tools, tests).
    epoch: CacheEpoch = STEADY_CACHE


def item_id_of(notification: Notification) -> str:
    match = _ITEM_RESOURCE.match(notification.resource_path)
    if match is None:
        msg = f"resource {notification.resource_path!r} does not name an item"
        raise InvalidItemNotification(msg)
    return match.group(1)


def item_of_record_key(key: bytes | None) -> bytes | None:
    """The item a notification record is about, from its ``<user_id>:<resource>`` key.

    ``items`` and ``items_prices`` records of one item have different keys; this names
    what they share, so a batch never handles one item twice at once.
    """
    match = _ITEM_IN_KEY.search(key or b"")
    return key if match is None else match.group(1)


async def on_item_notification(notification: Notification, catalog: Catalog) -> Outcome:
    """An ``items`` or ``items_prices`` notification: fetch the item and apply it."""
    item_id = item_id_of(notification)
    seller_id = notification.user_id
    try:
        item = await catalog.ml.get_item(item_id, seller_id=seller_id)
    except MlNotFound:
        marked = await catalog.store.mark_gone(seller_id, [item_id])
        metrics.ITEMS_GONE.inc(marked)
        return Outcome.GONE
    if item.seller_id != seller_id:
        msg = f"item {item_id} belongs to seller {item.seller_id}, not {seller_id}"
        raise InvalidItemNotification(msg)
    return await apply_item(item, catalog)


async def apply_item(item: MlItem, catalog: Catalog) -> Outcome:
    """Bring the cache, the index and the event stream up to ``item``, at most once each."""
    new = snapshot(item)
    for _ in range(_CAS_ATTEMPTS):
        state = await catalog.store.cached(new.id)
        if state.pending is not None:
            await flush_pending(new.id, state.pending, catalog)
        cached = state.snapshot
        as_snapshot = cached is None and await catalog.epoch.after_miss()
        if not state.gone and cached is not None:
            if not is_newer(new, cached):
                return _counted(Outcome.STALE)
            if same_content(cached, new):
                return _counted(Outcome.UNCHANGED)
        events = changes(cached, new, now=occurred(catalog.clock()), as_snapshot=as_snapshot)
        pending = _encode(events)
        expected = None if cached is None or state.gone else cached.last_updated
        if await catalog.store.put(new, expected=expected, pending=pending):
            if pending is not None:
                await flush_pending(new.id, pending, catalog)
            if cached is not None:
                return _counted(Outcome.UPDATED)
            return _counted(Outcome.SNAPSHOT if as_snapshot else Outcome.CREATED)
        metrics.CAS_CONFLICTS.inc()
    msg = f"item {new.id}: the cache kept changing under {_CAS_ATTEMPTS} writes"
    raise CacheUnavailable(msg)


def _encode(events: list[ItemEvent]) -> bytes | None:
    if not events:
        return None
    # Each event as its own model encodes it; the outbox reads them back as the union.
    return b"[" + b",".join(event.model_dump_json().encode() for event in events) + b"]"


async def flush_pending(item_id: str, pending: bytes, catalog: Catalog) -> None:
    """Publish a write's events from the outbox, then clear them (at-least-once)."""
    await publish_events(list(_PENDING.validate_json(pending)), catalog)
    await catalog.store.clear_pending(item_id, pending)


async def publish_events(events: Sequence[ItemEvent], catalog: Catalog) -> None:
    for event in events:
        await catalog.publisher.publish(
            catalog.events_topic,
            key=item_event_key(event),
            value=event.model_dump_json().encode(),
            headers=event_headers(event, source="peepers-catalog"),
        )
        metrics.EVENTS.labels(event.type).inc()


def _counted(outcome: Outcome) -> Outcome:
    metrics.APPLIED.labels(outcome.value).inc()
    return outcome
