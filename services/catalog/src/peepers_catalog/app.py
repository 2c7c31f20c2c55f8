"""The composition root of the catalog worker: a Faust app, its agents and owned clients.

The ready gate, raw topics, record adapter, agents and consumer settings come from the
consumer kit (`peepers_common.consumer`); each agent hands records to the
`RecordProcessor`, which calls a handler here and decides the fate of failures. The
handlers know nothing of Faust.

Topics (``settings.topic_prefix`` prepended to each):

* ``ml.notifications.items`` and ``…items_prices`` → `on_item_notification`
* ``peepers.sellers.v1`` → a full sync on ``seller.connected`` / ``seller.reconnected``
* the ``.retry`` topics of all three → the same handlers once a parked record is due
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import faust

from peepers_catalog.adapters.kafka_roster import KafkaSellerRoster
from peepers_catalog.adapters.redis_store import RedisItemStore
from peepers_catalog.adapters.redis_sync import RedisSyncCheckpoints
from peepers_catalog.api import create_api
from peepers_catalog.audit import CatalogAudit
from peepers_catalog.handlers import (
    Catalog,
    item_changed,
    item_of_record_key,
    on_item_notification,
)
from peepers_catalog.rebuild import rebuild_catalog
from peepers_catalog.settings import Settings
from peepers_catalog.sync import SyncOptions, full_sync
from peepers_common.audit import BudgetedSampler, audit_calls_per_s
from peepers_common.consumer import ConsumerKit, ConsumerRuntime
from peepers_common.consuming import Handler, InboundRecord, RecordProcessor
from peepers_common.events import SELLER_EVENT, event_type_of
from peepers_common.kafka import AIOKafkaEventPublisher
from peepers_common.ml import HttpMlApi, OutboundLimiter, ml_session
from peepers_common.ml.broker_tokens import BrokerTokenProvider
from peepers_common.namespaces import Namespace, connect_redis, redis_errors
from peepers_common.notifications import decode_value
from peepers_common.read_api import serve
from peepers_common.rebuild import CacheGuard, Resync
from peepers_common.topics import (
    CATALOG_SELLERS_CHANGELOG,
    PEEPERS_CATALOG,
    PEEPERS_SELLERS,
    notification_topic,
)

log = logging.getLogger(__name__)

CONSUMER = "catalog"
ITEM_TOPICS = (notification_topic("items"), notification_topic("items_prices"))

_SYNC_TRIGGERS = frozenset({"seller.connected", "seller.reconnected"})


@dataclass(frozen=True)
class Wiring:
    catalog: Catalog
    store: RedisItemStore
    checkpoints: RedisSyncCheckpoints
    processor: RecordProcessor
    ping: Callable[[], Awaitable[None]]
    roster: KafkaSellerRoster
    # Watches for a lost cache and rebuilds it (a shell's only observes).
    guard: CacheGuard
    # The drift audit loop (the worker's, unless its share of the ML budget is 0).
    audit: BudgetedSampler | None


@asynccontextmanager
async def open_wiring(settings: Settings, *, worker: bool = True) -> AsyncIterator[Wiring]:
    """Every client the catalog uses, opened together and closed in reverse (LIFO).

    The wiring's `CacheGuard` (not started: the worker starts it) rebuilds the cache after
    a loss, and the drift audit runs beside it. A shell's (``worker=False``) guard only
    observes: its syncs announce snapshots while the worker rebuilds, and it audits nothing.
    The guard of an ``items`` worker observes too (it still audits): the ``sync`` role
    rebuilds (docs/catalog.md).
    """
    async with AsyncExitStack() as stack:
        redis = connect_redis(settings.redis)
        stack.push_async_callback(redis.aclose)
        session = ml_session(settings.ml)
        stack.push_async_callback(session.close)
        publisher = await stack.enter_async_context(AIOKafkaEventPublisher(settings.kafka))
        namespace = Namespace("catalog", scope=settings.redis_scope)
        store = RedisItemStore(redis, namespace)
        limiter = OutboundLimiter(redis, settings.ml, scope=settings.redis_scope)
        # Unused leased permits go back to the shared budget before Redis closes.
        stack.push_async_callback(limiter.aclose)
        ml = HttpMlApi(
            session, settings.ml, BrokerTokenProvider(session, settings.token_broker), limiter
        )

        async def ping() -> None:
            with redis_errors("answering a ping"):
                await redis.ping()

        roster = KafkaSellerRoster(
            publisher,
            settings.kafka,
            settings.topic_prefix + CATALOG_SELLERS_CHANGELOG,
            namespace,
        )
        checkpoints = RedisSyncCheckpoints(redis, namespace)

        async def rebuild(epoch: str) -> Resync | None:
            return await rebuild_catalog(
                epoch, roster, catalog, checkpoints, sync_options(settings)
            )

        # The rebuild is a resync of every seller: the role that runs the syncs runs it, so
        # after a loss the webhooks' process (`items`) observes the epoch and stays light.
        rebuilds = worker and settings.role != "items"
        guard = CacheGuard(
            redis, namespace, rebuild if rebuilds else None, options=settings.rebuild
        )
        stack.push_async_callback(guard.aclose)
        catalog = Catalog(
            ml=ml,
            store=store,
            publisher=publisher,
            events_topic=settings.topic_prefix + PEEPERS_CATALOG,
            epoch=guard,
        )
        audit = None
        if worker and settings.audit.share > 0:
            audit = BudgetedSampler(
                redis,
                namespace,
                CatalogAudit(
                    catalog, roster, batch=settings.audit.batch, grace_s=settings.audit.grace_s
                ).step,
                calls_per_s=audit_calls_per_s(settings.ml, settings.audit.share),
                paused=lambda: guard.rebuilding,
            )
        yield Wiring(
            catalog=catalog,
            store=store,
            checkpoints=checkpoints,
            processor=RecordProcessor(
                consumer=CONSUMER,
                publisher=publisher,
                policy=settings.retry.policy(),
            ),
            ping=ping,
            roster=roster,
            guard=guard,
            audit=audit,
        )


def sync_options(settings: Settings, **overrides: Any) -> SyncOptions:
    return SyncOptions(
        chunk=settings.sync.chunk, apply_concurrency=settings.sync.apply_concurrency, **overrides
    )


class Runtime(ConsumerRuntime):
    """The worker's clients and read API, started before the agents take records."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self._wiring: Wiring | None = None

    async def open(self, stack: AsyncExitStack) -> RecordProcessor:
        settings = self.settings
        self._wiring = wiring = await stack.enter_async_context(open_wiring(settings))
        await wiring.guard.start()  # a lost cache is noticed before records are taken
        if wiring.audit is not None:
            audit = asyncio.create_task(wiring.audit.run(), name="catalog-drift-audit")
            stack.push_async_callback(_cancelled, audit)
        api = create_api(
            settings, store=wiring.store, search=wiring.store, ping=wiring.ping, cache=wiring.guard
        )
        await serve(api, stack, settings.http_host, settings.http_port)
        log.info("catalog worker ready; read API on port %d", settings.http_port)
        return wiring.processor

    @property
    def wiring(self) -> Wiring:
        if self._wiring is None:
            msg = "the catalog runtime is not started"
            raise RuntimeError(msg)
        return self._wiring

    async def handle_item(self, record: InboundRecord) -> str:
        notification = decode_value(record.value)
        return (await on_item_notification(notification, self.wiring.catalog)).value

    async def handle_seller(self, record: InboundRecord) -> str:
        if event_type_of(record.value) not in _SYNC_TRIGGERS:
            return "ignored"  # other transitions, and types newer than this code
        event = SELLER_EVENT.validate_json(record.value)
        await self.wiring.roster.keep(event.seller_id)  # before its items are cached
        state = await full_sync(
            event.seller_id,
            self.wiring.catalog,
            self.wiring.checkpoints,
            options=sync_options(self.settings, run_id=str(event.event_id)),
        )
        log.info("full sync of seller %d: %s", event.seller_id, state.counts)
        return "synced"

    def handler_for(self, source_topic: str) -> Handler:
        if source_topic.endswith(PEEPERS_SELLERS):
            return self.handle_seller
        return self.handle_item


def create_app(settings: Settings) -> faust.App:
    """The worker's app: the agents of its role (`Settings.role`), each with its retries."""
    group = settings
    if settings.role == "sync":
        group = settings.model_copy(update={"app_id": f"{settings.app_id}-sync"})
    kit = ConsumerKit(group, consumer=CONSUMER)
    runtime = kit.serve(Runtime(settings, loop=kit.app.loop, beacon=kit.app.beacon))
    retried: list[str] = []
    if settings.role != "sync":
        kit.batch_agent(
            "catalog.items",
            ITEM_TOPICS,
            runtime.handle_item,
            key=lambda record: item_of_record_key(record.key),
            coalesce=item_changed,  # each reads the item as it is now
        )
        retried += ITEM_TOPICS
    if settings.role != "items":
        kit.record_agent("catalog.sellers", [PEEPERS_SELLERS], runtime.handle_seller)
        retried.append(PEEPERS_SELLERS)
    kit.retry_agent("catalog.retries", retried, runtime.handler_for)
    return kit.app


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task
