"""The catalog end to end: the sandbox's notifier -> ingest -> Kafka -> catalog worker -> Redis.

`ItemHistory` records every version of the seller's items the sandbox served (through the
marketplace's change hook), so a test can say exactly what the cache and the event stream
must hold once the notifications have been worked off.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from peepers_catalog.app import ITEM_TOPICS
from peepers_catalog.domain import snapshot
from peepers_common.events import (
    CATALOG_EVENT,
    CatalogEvent,
    ItemCreated,
    ItemPriceChanged,
    ItemSnapshot,
    ItemStatusEvent,
    ItemStockChanged,
    ItemUpdated,
)
from peepers_common.kafka import caught_up
from peepers_common.ml.models import MlItem
from peepers_common.settings import KafkaSettings
from peepers_common.topics import PEEPERS_CATALOG, PEEPERS_SELLERS
from peepers_sandbox.config import DEMO_APP_ID
from peepers_sandbox.marketplace import Marketplace
from tests.integration.auth.harness import SELLER, AuthStack, auth_stack, read_all
from tests.integration.catalog.worker import (
    WorkerRun,
    catalog_topics,
    connect_and_sync,
    item_store,
    worker_run,
)
from tests.integration.ingest.support import URL, running_ingest
from tests.support import wait_until

# Activity that only changes items (the kinds of peepers_sandbox.activity that touch one).
ITEM_MIX = {
    "item_edit": 1.0,
    "price_change": 2.0,
    "stock_change": 2.0,
    "pause": 0.5,
    "reactivate": 0.5,
    "close": 0.1,
}
# The worker's own outbound limit (300 ML calls a minute by default) would hold a burst of
# changes back for up to a minute; the sandbox limits nothing here.
ML_LIMIT = {"CATALOG_ML__APP_LIMIT": '{"amount": 3000, "per_s": 60}'}
STATUS_EVENTS = {"paused": "item.paused", "closed": "item.closed", "active": "item.reactivated"}
# Snapshot fields reported by item.updated (the rest have events of their own or none).
UPDATED_FIELDS = ("title", "category_id", "sku", "permalink", "thumbnail")


def _snapshot(body: bytes) -> ItemSnapshot:
    return snapshot(MlItem.model_validate_json(body))


def _content(item: ItemSnapshot) -> dict[str, Any]:
    return item.model_dump(exclude={"last_updated"})


class ItemHistory:
    """Every version of one seller's items that ML (the in-process sandbox) served."""

    def __init__(self, market: Marketplace, seller_id: int) -> None:
        self.market = market
        self.seller_id = seller_id
        self.bodies: dict[str, dict[datetime, bytes]] = defaultdict(dict)
        self._initial = 0
        for item_id in market.items_by_seller[seller_id]:
            self.record(item_id)
        hook = market.on_change

        def on_change(topic: str, user_id: int, resource: str, actions: list[str] | None) -> None:
            if topic in ("items", "items_prices") and user_id == seller_id:
                self.record(resource.split("/")[2])
            if hook is not None:
                hook(topic, user_id, resource, actions)

        market.on_change = on_change

    def record(self, item_id: str) -> None:
        """Note the version ML serves now (a change made without the hook, too)."""
        body = self.market.item_json(item_id, owner=True)
        self.bodies[item_id][MlItem.model_validate_json(body).last_updated] = body

    def item_ids(self) -> list[str]:
        return list(self.market.items_by_seller[self.seller_id])

    def version(self, item_id: str, stamp: datetime) -> ItemSnapshot | None:
        body = self.bodies[item_id].get(stamp)
        return None if body is None else _snapshot(body)

    def served(self, item_id: str) -> ItemSnapshot:
        """What ML serves for the item now."""
        return _snapshot(self.market.item_json(item_id, owner=True))

    def changes(self) -> int:
        """Versions made since recording began (a new item's first version counts)."""
        return sum(len(v) for v in self.bodies.values()) - self._initial

    def start_counting(self) -> None:
        self._initial = sum(len(v) for v in self.bodies.values())

    def an_older_version(self) -> tuple[str, bytes]:
        """An item and a body ML served for it before, with other content than now."""
        for item_id, bodies in self.bodies.items():
            served = self.served(item_id)
            for stamp, body in sorted(bodies.items()):
                if stamp < served.last_updated and _content(_snapshot(body)) != _content(served):
                    return item_id, body
        msg = "no item has an older version with other content"
        raise AssertionError(msg)

    def mirrors(self, item_id: str, cached: ItemSnapshot | None) -> str | None:
        """Why `cached` is not what ML serves (None when it is).

        The cache holds ML's content; its ``last_updated`` is ML's too, or that of an
        earlier version with the same content (a version that changed nothing Peepers
        keeps is skipped, not written).
        """
        served = self.served(item_id)
        if cached is None:
            return f"{item_id}: not cached"
        if _content(cached) != _content(served):
            diff = {
                k: (v, _content(served)[k])
                for k, v in _content(cached).items()
                if v != _content(served)[k]
            }
            return f"{item_id}: cached differs from ML (cached, ML): {diff}"
        same = {
            stamp
            for stamp, body in self.bodies[item_id].items()
            if _content(_snapshot(body)) == _content(served)
        }
        if cached.last_updated not in same or cached.last_updated > served.last_updated:
            return f"{item_id}: cached stamp {cached.last_updated} is no version with ML's content"
        return None


@dataclass
class EventAudit:
    """The catalog events checked against the versions ML served."""

    records: int = 0
    distinct: int = 0
    # Records repeating an event_id already seen (a republish after a crash).
    same_id_duplicates: int = 0
    # Versions whose events were computed from a base other than the item's previous
    # announced version (a transition announced but never written, see the kill test).
    chain_breaks: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def audit_events(
    records: Sequence[CatalogEvent], history: ItemHistory, cached: dict[str, ItemSnapshot]
) -> EventAudit:
    result = EventAudit(records=len(records))
    by_id: dict[str, CatalogEvent] = {}
    for event in records:
        by_id.setdefault(str(event.event_id), event)
    result.distinct = len(by_id)
    result.same_id_duplicates = len(records) - len(by_id)
    keys = Counter((e.item_id, e.type, e.last_updated) for e in by_id.values())
    result.problems += [f"{key}: {n} distinct event ids" for key, n in keys.items() if n > 1]
    per_item: dict[str, dict[datetime, list[CatalogEvent]]] = defaultdict(lambda: defaultdict(list))
    for event in by_id.values():
        per_item[event.item_id][event.last_updated].append(event)
    if set(per_item) != set(history.item_ids()):
        result.problems.append(
            f"items with events != ML's: {set(per_item) ^ set(history.item_ids())}"
        )
    for item_id, by_stamp in per_item.items():
        _audit_item(item_id, by_stamp, history, cached.get(item_id), result)
    return result


def _audit_item(
    item_id: str,
    by_stamp: dict[datetime, list[CatalogEvent]],
    history: ItemHistory,
    cached: ItemSnapshot | None,
    result: EventAudit,
) -> None:
    stamps = sorted(by_stamp)
    created = [e for events in by_stamp.values() for e in events if isinstance(e, ItemCreated)]
    if len(created) != 1 or created[0].last_updated != stamps[0]:
        result.problems.append(f"{item_id}: item.created {len(created)} times, not first")
    if cached is not None and cached.last_updated != stamps[-1]:
        result.chain_breaks.append(
            f"{item_id}: announced {stamps[-1]}, cached {cached.last_updated}"
        )
    previous: ItemSnapshot | None = None
    for stamp in stamps:
        version = history.version(item_id, stamp)
        if version is None:
            result.problems.append(f"{item_id}: events for {stamp}, a version ML never served")
            return
        result.problems += [f"{item_id}@{stamp}: {p}" for p in _describes(by_stamp[stamp], version)]
        if previous is not None:
            breaks = _follows(by_stamp[stamp], previous, version)
            result.chain_breaks += [f"{item_id}@{stamp}: {b}" for b in breaks]
        previous = version


def _describes(events: list[CatalogEvent], version: ItemSnapshot) -> list[str]:
    """What in `events` does not match the version they name (the new side of each change)."""
    wrong: list[str] = []
    for event in events:
        ok = True
        if isinstance(event, ItemCreated):
            ok = event.item == version
        elif isinstance(event, ItemPriceChanged):
            ok = event.new_price == version.price
        elif isinstance(event, ItemStockChanged):
            ok = event.new_quantity == version.available_quantity
        elif isinstance(event, ItemStatusEvent):
            ok = event.new_status == version.status and STATUS_EVENTS[version.status] == event.type
        elif isinstance(event, ItemUpdated):
            ok = all(
                change.new == version.model_dump(mode="json")[name]
                for name, change in event.changes.items()
                if name in UPDATED_FIELDS
            )
        if not ok:
            wrong.append(f"{event.type} does not describe the version: {event}")
    return wrong


def _follows(events: list[CatalogEvent], old: ItemSnapshot, new: ItemSnapshot) -> list[str]:
    """How `events` differ from the one event per real change that turns `old` into `new`."""
    expected: set[str] = set()
    updated = {name for name in UPDATED_FIELDS if getattr(old, name) != getattr(new, name)}
    if (old.price, old.currency_id) != (new.price, new.currency_id):
        expected.add("item.price_changed")
    if old.available_quantity != new.available_quantity:
        expected.add("item.stock_changed")
    if old.status != new.status:
        expected.add(STATUS_EVENTS[new.status])
    elif old.sub_status != new.sub_status:
        updated.add("sub_status")
    if updated:
        expected.add("item.updated")
    types = [e.type for e in events]
    breaks = [] if sorted(types) == sorted(expected) else [f"types {types}, expected {expected}"]
    for event in events:
        if isinstance(event, ItemPriceChanged) and event.old_price != old.price:
            breaks.append(f"price_changed from {event.old_price}, was {old.price}")
        if isinstance(event, ItemStockChanged) and event.old_quantity != old.available_quantity:
            breaks.append(f"stock_changed from {event.old_quantity}, was {old.available_quantity}")
        if isinstance(event, ItemStatusEvent) and event.old_status != old.status:
            breaks.append(f"{event.type} from {event.old_status}, was {old.status}")
        if isinstance(event, ItemUpdated) and set(event.changes) != updated:
            breaks.append(f"item.updated changes {set(event.changes)}, expected {updated}")
    return breaks


@dataclass
class Deployment:
    """A seller's catalog in the sandbox, an in-process ingest and the worker's settings."""

    auth: AuthStack
    run: WorkerRun
    kafka: KafkaSettings
    redis: aioredis.Redis
    history: ItemHistory | None = None

    @property
    def items(self) -> ItemHistory:
        assert self.history is not None, "connect() first"
        return self.history

    async def connect(self) -> None:
        """Record ML's versions, log the seller in (full sync), then let ML notify."""
        self.history = ItemHistory(self.auth.sandbox.state.market, SELLER)
        await connect_and_sync(self.auth, self.run, self.redis)
        await self.auth.sandbox.admin.patch_notifier(
            enabled=True, retry_gaps_s=[0.2, 0.5, 1.0, 2.0, 4.0]
        )
        self.items.start_counting()

    async def start_activity(self, rate: float) -> None:
        await self.auth.sandbox.admin.start_activity(rate, ITEM_MIX)

    async def wait_changes(self, count: int, *, timeout_s: float = 30) -> None:
        """Wait until ML made `count` item changes since `connect` (a bounded wait)."""

        async def made() -> bool:
            return self.items.changes() >= count

        await wait_until(made, timeout_s=timeout_s, every_s=0.05)

    async def new_item(self) -> None:
        await self.auth.sandbox.admin.event("new_item", seller_id=SELLER)

    async def stop_activity(self) -> None:
        await self.auth.sandbox.admin.stop_activity()
        await self.auth.sandbox.admin.wait_notifier_idle(within_s=30)

    async def cached(self) -> dict[str, ItemSnapshot]:
        return await item_store(self.run, self.redis).get_many(self.items.item_ids())

    async def wait_converged(self, *, timeout_s: float = 40) -> None:
        """Wait until every item of the seller is cached as ML serves it."""
        left: list[str] = []

        async def converged() -> bool:
            cached = await self.cached()
            left[:] = [
                why
                for item_id in self.items.item_ids()
                if (why := self.items.mirrors(item_id, cached.get(item_id))) is not None
            ]
            return not left

        try:
            await wait_until(converged, timeout_s=timeout_s, every_s=0.25)
        except AssertionError:
            msg = f"{len(left)} items differ from ML: {left[:5]}"
            raise AssertionError(msg) from None
        live = await item_store(self.run, self.redis).seller_item_ids(SELLER)
        assert live == set(self.items.item_ids())

    async def events(self) -> list[CatalogEvent]:
        records = await read_all(self.kafka, self.run.topic(PEEPERS_CATALOG))
        return [CATALOG_EVENT.validate_json(r.value or b"") for r in records]

    async def published(self) -> list[str]:
        """Every record on the events topic, in a stable order (partitions interleave)."""
        return sorted(event.model_dump_json() for event in await self.events())

    async def audit(self) -> EventAudit:
        return audit_events(await self.events(), self.items, await self.cached())

    async def wait_consumed(self, *, timeout_s: float = 20) -> None:
        """Wait until the worker's group committed every notification on its topics."""
        topics = [self.run.topic(t) for t in ITEM_TOPICS]

        async def consumed() -> bool:
            return await caught_up(self.kafka, self.run.app_id, topics)

        await wait_until(consumed, timeout_s=timeout_s, every_s=0.5)


@asynccontextmanager
async def deployment(
    kafka: KafkaSettings,
    redis: aioredis.Redis,
    tmp_path: Path,
    *,
    items: int,
    extra_env: dict[str, str] | None = None,
) -> AsyncIterator[Deployment]:
    """One seller with `items` items, ML notifying a real ingest on the worker's topics.

    The worker is not started: ``async with ready_worker(d.run)`` (once or more).
    """
    prefix = await catalog_topics(kafka)
    async with (
        auth_stack(kafka, topic=prefix + PEEPERS_SELLERS) as auth,
        running_ingest(kafka, tmp_path / "spool", prefix, application_id=DEMO_APP_ID) as ingest,
    ):
        admin = auth.sandbox.admin
        for _ in range(items - len(auth.sandbox.state.market.items_by_seller[SELLER])):
            await admin.event("new_item", seller_id=SELLER)
        await admin.patch_app(
            DEMO_APP_ID, callback_url=str(ingest.make_url(URL)), topics=["items", "items_prices"]
        )
        env = {**ML_LIMIT, **(extra_env or {})}
        run = worker_run(auth, prefix, kafka, tmp_path / "catalog.log", extra_env=env)
        yield Deployment(auth=auth, run=run, kafka=kafka, redis=redis)
