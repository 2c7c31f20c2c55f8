"""The app factory: the composition of ingest, with keyword-only overrides for tests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import redis.asyncio as aioredis
from aiohttp import web

from peepers_common.errors import PublishError
from peepers_common.kafka import EventPublisher
from peepers_common.metrics import metrics_view
from peepers_common.ml import HttpMlApi, OutboundLimiter, TokenProvider, ml_session
from peepers_common.ml.broker_tokens import BrokerTokenProvider
from peepers_common.namespaces import Namespace, connect_redis
from peepers_ingest import metrics
from peepers_ingest.adapters import (
    ReconnectingPublisher,
    RedisDeduplicator,
    SqliteSpool,
)
from peepers_ingest.adapters.ml_missed_feeds import MlMissedFeedsSource
from peepers_ingest.drainer import drain_forever, stop_draining
from peepers_ingest.edge import EdgeRoutes
from peepers_ingest.handlers import Intake, prefixed_topics
from peepers_ingest.inbound_limits import (
    InboundRateLimit,
    LocalRateLimiter,
    Rate,
    application_level,
    user_level,
)
from peepers_ingest.keys import (
    client_ip_key,
    intake_key,
    publisher_state_key,
    rate_limit_key,
    reconciler_key,
    settings_key,
    source_check_key,
    spool_key,
)
from peepers_ingest.ports import Deduplicator, MissedFeedsSource, Spool
from peepers_ingest.reconciler import Reconciler
from peepers_ingest.security import Allowlist, SourceCheck
from peepers_ingest.settings import Settings
from peepers_ingest.views import healthz, readyz, reconcile, webhook

__all__ = ["WEBHOOK_PATHS", "create_app", "reconciler_key"]

log = logging.getLogger(__name__)

# The path ML is configured with, and the one of the original design.
WEBHOOK_PATHS = ("/webhooks/mercadolibre", "/api/webhook/mercado-livre")


def create_app(
    settings: Settings,
    *,
    publisher: EventPublisher | None = None,
    spool: Spool | None = None,
    dedup: Deduplicator | None = None,
    redis: aioredis.Redis | None = None,
    topic_for: Callable[[str], str] | None = None,
    redis_scope: str | None = None,
    missed_feeds: MissedFeedsSource | None = None,
    tokens: TokenProvider | None = None,
) -> web.Application:
    """Build the ingest app; adapters not given are created (and owned) by the app.

    ``topic_for`` maps an ML topic to a Kafka topic (default: the registry, behind
    ``settings.topic_prefix``); ``redis_scope`` isolates Redis keys and outbound rate
    limits (tests). ``missed_feeds`` replaces the ML source of the reconciler; ``tokens``
    replaces the token broker behind the real one.
    """
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[settings_key] = settings
    app[source_check_key] = SourceCheck(Allowlist(settings.allowed_cidrs), settings.trusted_proxies)
    app[rate_limit_key] = _rate_limit(settings) if settings.rate_limit_enabled else None
    app[reconciler_key] = None
    topics = topic_for or prefixed_topics(settings.topic_prefix)
    build_source = missed_feeds is None and _reconciler_wanted(settings, tokens)

    async def lifespan(app: web.Application) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            client = redis
            if client is None and (dedup is None or build_source):
                client = connect_redis(settings.redis)
                stack.push_async_callback(client.aclose)
            deduplicator = dedup
            if deduplicator is None:
                assert client is not None  # noqa: S101 - connected above for this case
                namespace = Namespace("ingest", scope=redis_scope)
                deduplicator = RedisDeduplicator(client, namespace, ttl_s=settings.dedup_ttl_s)

            the_spool: Spool
            if spool is None:
                the_spool = await stack.enter_async_context(SqliteSpool(settings.spool_dir))
            else:
                the_spool = spool
            app[spool_key] = the_spool
            _export_spool_gauges(the_spool)
            stack.callback(_reset_spool_gauges)

            the_publisher = publisher
            state: Callable[[], bool] = lambda: True  # noqa: E731 - injected: assumed connected
            if the_publisher is None:
                reconnecting = await stack.enter_async_context(
                    ReconnectingPublisher(settings.kafka)
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(settings.kafka_connect_wait_s):
                        await reconnecting.wait_connected()
                the_publisher = reconnecting
                state = lambda: reconnecting.connected  # noqa: E731
            app[publisher_state_key] = state

            intake = Intake(
                the_publisher,
                the_spool,
                deduplicator,
                topic_for=topics,
                budget_s=settings.publish_budget_ms / 1000,
                drain_batch=settings.spool_drain_batch,
            )
            app[intake_key] = intake
            drainer = asyncio.create_task(drain_forever(intake), name="spool-drain")
            stack.push_async_callback(_final_drain, intake, settings.shutdown_timeout_s)
            stack.push_async_callback(stop_draining, drainer)

            source = missed_feeds
            if build_source:
                assert client is not None  # noqa: S101 - connected above for this case
                source = await stack.enter_async_context(
                    _ml_missed_feeds(settings, client, tokens, limiter_scope=redis_scope)
                )
            if source is not None:
                reconciler = Reconciler(source, intake, application_id=settings.application_id)
                app[reconciler_key] = reconciler
                task = asyncio.create_task(
                    reconciler.run_forever(settings.reconcile_interval_s), name="reconciler"
                )
                stack.push_async_callback(stop_draining, task)
            if settings.application_id is None:
                log.warning("INGEST_APPLICATION_ID is unset: any application_id is accepted")
            yield

    app.cleanup_ctx.append(lifespan)
    routes = EdgeRoutes(app, "ingest")
    # The webhook's latency is peepers_ingest_ack_duration_seconds, by outcome: a second
    # histogram per webhook would cost ~1% of ingest's CPU at saturation to say less.
    for path in (*WEBHOOK_PATHS, WEBHOOK_PATHS[0] + "/{token}"):
        routes.add("POST", path, webhook, timed=False)
    routes.add("POST", "/internal/reconcile", reconcile)
    routes.add("GET", "/healthz", healthz)
    routes.add("GET", "/readyz", readyz)
    routes.add("GET", "/metrics", metrics_view)
    routes.close()
    return app


def _reconciler_wanted(settings: Settings, tokens: TokenProvider | None) -> bool:
    missing = settings.reconciler_missing()
    if tokens is not None:
        missing = [name for name in missing if not name.startswith("INGEST_TOKEN_BROKER")]
    if not missing:
        log.info(
            "missed_feeds reconciler on: every %.0f s, with seller tokens of %s",
            settings.reconcile_interval_s,
            settings.reconcile_seller_ids,
        )
        return True
    if settings.token_broker is not None or settings.reconcile_seller_ids:
        log.warning("missed_feeds reconciler off: %s unset", ", ".join(missing))
    else:
        log.info("missed_feeds reconciler off: %s unset", ", ".join(missing))
    return False


@asynccontextmanager
async def _ml_missed_feeds(
    settings: Settings,
    redis: aioredis.Redis,
    tokens: TokenProvider | None,
    *,
    limiter_scope: str | None,
) -> AsyncIterator[MlMissedFeedsSource]:
    # One ClientSession for ML and the token broker, closed when the app stops.
    async with ml_session(settings.ml) as session:
        if tokens is None:
            assert settings.token_broker is not None  # noqa: S101 - _reconciler_wanted checked
            tokens = BrokerTokenProvider(session, settings.token_broker)
        # Replicas of every service share the application's outbound limits ("ml").
        limiter = OutboundLimiter(redis, settings.ml, scope=limiter_scope)
        yield MlMissedFeedsSource(
            HttpMlApi(session, settings.ml, tokens, limiter),
            settings.reconcile_seller_ids,
            page_size=settings.reconcile_page_size,
        )


def _rate_limit(settings: Settings) -> InboundRateLimit:
    # Per replica, in the process: the limit protects this replica's capacity, and a Redis
    # round trip per webhook cost 10-20% of its CPU (docs/ingest.md).
    return InboundRateLimit(
        LocalRateLimiter(),
        [
            application_level(Rate(settings.rate_limit_total_per_s), name="webhook"),
            user_level(Rate(settings.rate_limit_per_ip_per_s), lambda r: r.get(client_ip_key)),
        ],
        service="ingest",
    )


def _export_spool_gauges(spool: Spool) -> None:
    metrics.SPOOL_DEPTH.set_function(lambda: spool.depth)

    def oldest_age() -> float:
        oldest = spool.oldest_spooled_at
        return 0.0 if oldest is None else max(0.0, time.time() - oldest)

    metrics.SPOOL_OLDEST_AGE.set_function(oldest_age)


def _reset_spool_gauges() -> None:
    metrics.SPOOL_DEPTH.set_function(lambda: 0)
    metrics.SPOOL_OLDEST_AGE.set_function(lambda: 0)


async def _final_drain(intake: Intake, timeout_s: float) -> None:
    # In-flight sends get their chance to land, and what Kafka takes now is not left for
    # the next start; anything else stays safely in the spool.
    with contextlib.suppress(PublishError, TimeoutError):
        async with asyncio.timeout(timeout_s):
            await intake.settle_orphans(timeout_s)
            await intake.drain_once()
