"""The composition root of the orders worker: a Faust app on the consumer kit, the mailer.

Topics (``settings.topic_prefix`` before each), consumer group ``settings.app_id``:

* ``ml.notifications.orders_v2``, ``…shipments``, ``…payments`` → `handlers.on_notification`
* ``peepers.sellers.v1`` → on ``seller.connected`` / ``seller.reconnected``: note the
  connection, then the seller's backfill
* ``peepers.orders.v1`` → sales analytics (`analytics.on_order_event`)
* the ``.retry`` topics of all of them → the same handlers once a parked record is due

Mail is not sent here: the mailer is its own process and consumer group
(`peepers_orders.mailer`), so a slow or dead SMTP server never delays the order cache.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import faust
import redis.asyncio as aioredis

from peepers_common.audit import BudgetedSampler, Roster, audit_calls_per_s
from peepers_common.consumer import ConsumerKit, ConsumerRuntime
from peepers_common.consuming import Handler, InboundRecord, RecordProcessor
from peepers_common.events import SELLER_EVENT, event_type_of
from peepers_common.kafka import AIOKafkaEventPublisher
from peepers_common.ml import HttpMlApi, OutboundLimiter, ml_session
from peepers_common.ml.broker_tokens import BrokerTokenProvider
from peepers_common.namespaces import Namespace, connect_redis, redis_errors
from peepers_common.notifications import changed_resource, decode_value
from peepers_common.read_api import serve
from peepers_common.rebuild import CacheGuard, GuardOptions, Resync
from peepers_common.topics import PEEPERS_ORDERS, PEEPERS_SELLERS, notification_topic
from peepers_orders import analytics
from peepers_orders.adapters.redis_analytics import RedisAnalytics
from peepers_orders.adapters.redis_store import RedisOrderStore, RedisSellerDirectory
from peepers_orders.api import create_api
from peepers_orders.audit import OrdersAudit
from peepers_orders.backfill import BackfillOptions, backfill
from peepers_orders.handlers import Orders, on_notification
from peepers_orders.priority import PrioritizedSource, UrgentFirst
from peepers_orders.rebuild import OrdersRebuild, connected_sellers, rebuild_orders
from peepers_orders.settings import Settings

log = logging.getLogger(__name__)

CONSUMER = "orders"
NOTIFICATION_TOPICS = tuple(
    notification_topic(topic) for topic in ("orders_v2", "shipments", "payments")
)
_BACKFILL_TRIGGERS = frozenset({"seller.connected", "seller.reconnected"})


@dataclass(frozen=True)
class Wiring:
    orders: Orders
    backfill_orders: Orders
    store: RedisOrderStore
    sellers: RedisSellerDirectory
    analytics: RedisAnalytics
    processor: RecordProcessor
    ping: Callable[[], Awaitable[None]]
    # Watches for a lost cache and rebuilds it (not started: the worker starts it).
    guard: CacheGuard
    # The drift audit loop (not started; None when its share of the ML budget is 0).
    audit: BudgetedSampler | None


def ml_api(settings: Settings, session: aiohttp.ClientSession, redis: aioredis.Redis) -> HttpMlApi:
    """ML through the shared outbound limit, with tokens from the auth service's broker."""
    return HttpMlApi(
        session,
        settings.ml,
        BrokerTokenProvider(session, settings.token_broker),
        OutboundLimiter(redis, settings.ml, scope=settings.redis_scope),
    )


@dataclass(frozen=True)
class Clients:
    """What the worker and the mailer both open: Redis, ML's session, a Kafka publisher."""

    redis: aioredis.Redis
    session: aiohttp.ClientSession
    publisher: AIOKafkaEventPublisher
    namespace: Namespace


async def open_clients(settings: Settings, stack: AsyncExitStack) -> Clients:
    """The shared clients, closed in reverse by ``stack``."""
    redis = connect_redis(settings.redis)
    stack.push_async_callback(redis.aclose)
    session = ml_session(settings.ml)
    stack.push_async_callback(session.close)
    publisher = await stack.enter_async_context(AIOKafkaEventPublisher(settings.kafka))
    return Clients(redis, session, publisher, Namespace("orders", scope=settings.redis_scope))


@asynccontextmanager
async def open_wiring(settings: Settings) -> AsyncIterator[Wiring]:
    """Every client the orders service uses, opened together and closed in reverse."""
    async with AsyncExitStack() as stack:
        clients = await open_clients(settings, stack)
        redis, session, publisher = clients.redis, clients.session, clients.publisher
        namespace = clients.namespace
        store = RedisOrderStore(redis, namespace)
        sellers = RedisSellerDirectory(redis, namespace)
        ml = ml_api(settings, session, redis)
        gate = UrgentFirst()
        orders = Orders(
            ml=PrioritizedSource(ml, gate, urgent=True),
            store=store,
            sellers=sellers,
            publisher=publisher,
            events_topic=settings.topic_prefix + PEEPERS_ORDERS,
            rebuilding=lambda: guard.rebuilding,  # the guard below, once it runs
        )

        async def ping() -> None:
            with redis_errors("answering a ping"):
                await redis.ping()

        backfill_orders = orders.reading_with(PrioritizedSource(ml, gate, urgent=False))
        analytics_store = RedisAnalytics(redis, namespace)
        rebuild_deps = OrdersRebuild(
            orders=backfill_orders,
            sellers=sellers,
            checkpoints=sellers,
            analytics=analytics_store,
            kafka=settings.kafka,
            sellers_topic=settings.topic_prefix + PEEPERS_SELLERS,
            orders_topic=settings.topic_prefix + PEEPERS_ORDERS,
            zone=ZoneInfo(settings.analytics_timezone),
            backfill_days=settings.backfill.days,
            new_generation=analytics_store.pinned,
        )

        async def rebuild(epoch: str) -> Resync:
            return await rebuild_orders(epoch, rebuild_deps)

        guard = CacheGuard(
            redis,
            namespace,
            rebuild,
            options=GuardOptions(check_every_s=settings.cache_check_every_s),
        )
        stack.push_async_callback(guard.aclose)

        async def roster() -> list[int]:
            return list(await connected_sellers(settings.kafka, rebuild_deps.sellers_topic))

        audit = None
        if settings.audit.share > 0:
            audit = BudgetedSampler(
                redis,
                namespace,
                OrdersAudit(
                    backfill_orders,  # behind webhook-driven calls, as a backfill
                    Roster(roster),
                    batch=settings.audit.batch,
                    grace_s=settings.audit.grace_s,
                ).step,
                calls_per_s=audit_pace(settings),
                paused=lambda: guard.rebuilding,
            )

        yield Wiring(
            orders=orders,
            backfill_orders=backfill_orders,
            store=store,
            sellers=sellers,
            analytics=analytics_store,
            processor=RecordProcessor(
                consumer=CONSUMER, publisher=publisher, policy=settings.retry.policy()
            ),
            ping=ping,
            guard=guard,
            audit=audit,
        )


def audit_pace(settings: Settings) -> float:
    """The drift audit's ML calls a second: its share of the app limit, capped."""
    share = audit_calls_per_s(settings.ml, settings.audit.share)
    return min(share, settings.audit.max_calls_per_s)


def backfill_options(settings: Settings, **overrides: Any) -> BackfillOptions:
    return BackfillOptions(
        days=settings.backfill.days, page_size=settings.backfill.page_size, **overrides
    )


class Runtime(ConsumerRuntime):
    """The worker's clients, read API and mailer, started before the agents take records."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.zone = ZoneInfo(settings.analytics_timezone)
        self._wiring: Wiring | None = None

    async def open(self, stack: AsyncExitStack) -> RecordProcessor:
        settings = self.settings
        self._wiring = wiring = await stack.enter_async_context(open_wiring(settings))
        await wiring.guard.start()  # a lost cache is noticed before records are taken
        if wiring.audit is not None:
            audit = asyncio.create_task(wiring.audit.run(), name="orders-drift-audit")
            stack.push_async_callback(_cancelled, audit)
        api = create_api(
            settings, store=wiring.store, analytics_store=wiring.analytics, ready=self.ready_state
        )
        await serve(api, stack, settings.http_host, settings.http_port)
        log.info("orders worker ready; read API on port %d", settings.http_port)
        return wiring.processor

    @property
    def wiring(self) -> Wiring:
        if self._wiring is None:
            msg = "the orders runtime is not started"
            raise RuntimeError(msg)
        return self._wiring

    async def ready_state(self) -> tuple[bool, dict[str, Any]]:
        """Ready when Redis answers; the body says whether the cache is being rebuilt."""
        await self.wiring.ping()
        return True, {
            "status": "ready",
            "cache": "rebuilding" if self.wiring.guard.rebuilding else "ready",
        }

    async def handle_notification(self, record: InboundRecord) -> str:
        return (await on_notification(decode_value(record.value), self.wiring.orders)).value

    async def handle_seller(self, record: InboundRecord) -> str:
        if event_type_of(record.value) not in _BACKFILL_TRIGGERS:
            return "ignored"  # other transitions, and types newer than this code
        event = SELLER_EVENT.validate_json(record.value)
        await self.wiring.sellers.connected(event.seller_id, event.occurred_at)
        state = await backfill(
            event.seller_id,
            self.wiring.backfill_orders,
            self.wiring.sellers,
            options=backfill_options(
                self.settings, run_id=str(event.event_id), not_before=event.occurred_at
            ),
        )
        log.info("backfill of seller %d: %s", event.seller_id, state.counts)
        return "backfilled"

    async def handle_analytics(self, record: InboundRecord) -> str:
        return await analytics.on_order_event(record.value, self.wiring.analytics, self.zone)

    def handler_for(self, source_topic: str) -> Handler:
        if source_topic.endswith(PEEPERS_SELLERS):
            return self.handle_seller
        if source_topic.endswith(PEEPERS_ORDERS):
            return self.handle_analytics
        return self.handle_notification


def create_app(settings: Settings) -> faust.App:
    kit = ConsumerKit(settings, consumer=CONSUMER)
    runtime = kit.serve(Runtime(settings, loop=kit.app.loop, beacon=kit.app.beacon))
    # Each notification reads its order (payment, shipment) as it is now: coalesced.
    kit.batch_agent(
        "orders.notifications",
        NOTIFICATION_TOPICS,
        runtime.handle_notification,
        coalesce=changed_resource,
    )
    kit.record_agent("orders.sellers", [PEEPERS_SELLERS], runtime.handle_seller)
    kit.record_agent("orders.analytics", [PEEPERS_ORDERS], runtime.handle_analytics)
    kit.retry_agent(
        "orders.retries",
        [*NOTIFICATION_TOPICS, PEEPERS_SELLERS, PEEPERS_ORDERS],
        runtime.handler_for,
    )
    return kit.app


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task
