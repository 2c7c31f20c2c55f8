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

The hot path, per record: the cached state is read while ML answers (the store sends a
turn's reads as one pipeline), each event is encoded once (the outbox keeps the same
bytes that are published), and the compare-and-set write and the outbox clear are one
script call each (pipelined with the other records' by the store).
"""

from __future__ import annotations

import asyncio
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
from peepers_catalog.ports import CachedItem, ItemSource, ItemStore
from peepers_common.consuming import InboundRecord
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
from peepers_common.notifications import Notification, decode_value
from peepers_common.rebuild import STEADY_CACHE, CacheEpoch

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


def item_changed(record: InboundRecord) -> tuple[int, str]:
    """The seller and item an ``items`` or ``items_prices`` record asks to read.

    Both topics' records of one item ask for the same read, so a batch coalesces them
    (`peepers_common.consuming.process_batch`).
    """
    notification = decode_value(record.value or b"")
    return notification.user_id, item_id_of(notification)


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
    # Read what is cached while ML answers: a compare-and-set catches any write between.
    read = asyncio.ensure_future(catalog.store.cached(item_id))
    try:
        item = await catalog.ml.get_item(item_id, seller_id=seller_id)
    except MlNotFound:
        _forget(read)
        marked = await catalog.store.mark_gone(seller_id, [item_id])
        metrics.ITEMS_GONE.inc(marked)
        return Outcome.GONE
    except BaseException:
        _forget(read)
        raise
    if item.seller_id != seller_id:
        _forget(read)
        msg = f"item {item_id} belongs to seller {item.seller_id}, not {seller_id}"
        raise InvalidItemNotification(msg)
    return await apply_item(item, catalog, cached=await read)


def _forget(task: asyncio.Future[CachedItem]) -> None:
    """Drop a read nobody needs; its outcome, even an error, is of no interest."""
    task.cancel()
    task.add_done_callback(lambda done: done.cancelled() or done.exception())


async def apply_item(
    item: MlItem, catalog: Catalog, *, cached: CachedItem | None = None
) -> Outcome:
    """Bring the cache, the index and the event stream up to ``item``, at most once each.

    ``cached`` is the item's cached state if the caller read it already.
    """
    new = snapshot(item)
    state = cached
    for _ in range(_CAS_ATTEMPTS):
        if state is None:
            state = await catalog.store.cached(new.id)
        if state.pending is not None:
            await flush_pending(new.id, state.pending, catalog)
        old = state.snapshot
        as_snapshot = old is None and await catalog.epoch.after_miss()
        if not state.gone and old is not None:
            if not is_newer(new, old):
                return _counted(Outcome.STALE)
            if same_content(old, new):
                return _counted(Outcome.UNCHANGED)
        events = [
            (event, event.model_dump_json().encode())
            for event in changes(old, new, now=occurred(catalog.clock()), as_snapshot=as_snapshot)
        ]
        # The outbox keeps the very bytes that are published: each event encoded once.
        pending = b"[" + b",".join(value for _, value in events) + b"]" if events else None
        expected = None if old is None or state.gone else old.last_updated
        if await catalog.store.put(new, expected=expected, pending=pending):
            if pending is not None:
                await _publish(events, catalog)
                await catalog.store.clear_pending(new.id, pending)
            if old is not None:
                return _counted(Outcome.UPDATED)
            return _counted(Outcome.SNAPSHOT if as_snapshot else Outcome.CREATED)
        state = None
        metrics.CAS_CONFLICTS.inc()
    msg = f"item {new.id}: the cache kept changing under {_CAS_ATTEMPTS} writes"
    raise CacheUnavailable(msg)


async def flush_pending(item_id: str, pending: bytes, catalog: Catalog) -> None:
    """Publish a write's events left in the outbox, then clear them (at-least-once)."""
    await publish_events(list(_PENDING.validate_json(pending)), catalog)
    await catalog.store.clear_pending(item_id, pending)


async def publish_events(events: Sequence[ItemEvent], catalog: Catalog) -> None:
    await _publish([(event, event.model_dump_json().encode()) for event in events], catalog)


async def _publish(events: Sequence[tuple[ItemEvent, bytes]], catalog: Catalog) -> None:
    for event, value in events:
        await catalog.publisher.publish(
            catalog.events_topic,
            key=item_event_key(event),
            value=value,
            headers=event_headers(event, source="peepers-catalog"),
        )
        metrics.EVENTS.labels(event.type).inc()


# Each outcome's counter, looked up once rather than per record.
_APPLIED: Final = {outcome: metrics.APPLIED.labels(outcome.value) for outcome in Outcome}


def _counted(outcome: Outcome) -> Outcome:
    _APPLIED[outcome].inc()
    return outcome
