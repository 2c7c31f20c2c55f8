"""The app factory: the composition of the auth service (and its DI container).

``create_app(settings)`` owns every client it builds (Redis, the ML session, the Kafka
producer) in one cleanup context, torn down in reverse order and only if set up. Tests
pass fakes for any of them as keyword overrides.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass
from typing import Final

import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError

from peepers_auth import metrics
from peepers_auth.adapters.changelog_store import ChangelogSellerStore
from peepers_auth.adapters.ml_oauth import HttpMlOAuth
from peepers_auth.adapters.redis_store import RedisLoginStates, RedisSellerStore, RedisSessions
from peepers_auth.crypto import TokenCipher
from peepers_auth.handlers import AuthDeps
from peepers_auth.middlewares import context_middleware, error_middleware
from peepers_auth.ports import LoginStates, MlOAuth, SellerStore, Sessions
from peepers_auth.settings import Settings
from peepers_auth.views import deps_key, settings_key, setup_routes
from peepers_common.changelog import Changelog, RedisViewMarker
from peepers_common.errors import CacheUnavailable, ConfigurationError
from peepers_common.kafka import AIOKafkaEventPublisher, EventPublisher
from peepers_common.metrics import http_metrics_middleware
from peepers_common.ml import OutboundLimiter, ml_session
from peepers_common.namespaces import Namespace, connect_redis
from peepers_common.topics import AUTH_SELLERS_CHANGELOG, PEEPERS_SELLERS

SERVICE: Final = "auth"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Overrides:
    publisher: EventPublisher | None
    ml: MlOAuth | None
    states: LoginStates | None
    sessions: Sessions | None
    sellers: SellerStore | None
    namespace: Namespace
    topic: str
    changelog_topic: str
    clock: Callable[[], float]


overrides_key: Final = web.AppKey("overrides_key", _Overrides)
redis_key: Final = web.AppKey("redis_key", aioredis.Redis)
changelog_key: Final = web.AppKey("changelog_key", Changelog)


def create_app(
    settings: Settings,
    *,
    publisher: EventPublisher | None = None,
    ml: MlOAuth | None = None,
    states: LoginStates | None = None,
    sessions: Sessions | None = None,
    sellers: SellerStore | None = None,
    namespace: Namespace | None = None,
    topic: str = PEEPERS_SELLERS,
    changelog_topic: str = AUTH_SELLERS_CHANGELOG,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    app = web.Application(
        middlewares=[context_middleware, http_metrics_middleware(SERVICE), error_middleware],
        client_max_size=16 * 1024,
    )
    app[settings_key] = settings
    app[overrides_key] = _Overrides(
        publisher,
        ml,
        states,
        sessions,
        sellers,
        namespace or Namespace(SERVICE),
        topic,
        changelog_topic,
        clock,
    )
    app.cleanup_ctx.append(_dependencies_ctx)
    setup_routes(app)
    app.router.add_get("/readyz", readyz)
    return app


async def _dependencies_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    o = app[overrides_key]
    async with AsyncExitStack() as stack:
        states, sessions, sellers = o.states, o.sessions, o.sellers
        if states is None or sessions is None or sellers is None:
            # Only the Redis adapters need the keys; fakes run without them.
            cipher = TokenCipher(settings.token_keys)
            redis = connect_redis(settings.redis)
            stack.push_async_callback(redis.aclose)
            app[redis_key] = redis
            states = states or RedisLoginStates(redis, o.namespace)
            sessions = sessions or RedisSessions(redis, o.namespace)
            if sellers is None:
                sellers = await _seller_store(app, stack, redis, cipher)
        ml = o.ml
        if ml is None:
            if not settings.ml.app_id or not settings.ml.client_secret.get_secret_value():
                msg = "set AUTH_ML__APP_ID and AUTH_ML__CLIENT_SECRET (the ML application)"
                raise ConfigurationError(msg)
            session = ml_session(settings.ml)
            stack.push_async_callback(session.close)
            budget = app.get(redis_key)
            if budget is None:  # the stores are fakes: a client for the budget alone
                budget = connect_redis(settings.redis)
                stack.push_async_callback(budget.aclose)
            # The app's shared outbound budget, as every service's ML client takes it.
            limiter = OutboundLimiter(budget, settings.ml, scope=o.namespace.scope)
            stack.push_async_callback(limiter.aclose)
            ml = HttpMlOAuth(
                session, settings.ml, limiter, refresh_permit_wait_s=settings.refresh_permit_wait_s
            )
        publisher = o.publisher
        if publisher is None:
            publisher = await stack.enter_async_context(AIOKafkaEventPublisher(settings.kafka))
        app[deps_key] = AuthDeps(
            settings=settings,
            ml=ml,
            states=states,
            sessions=sessions,
            sellers=sellers,
            publisher=publisher,
            topic=o.topic,
            clock=o.clock,
        )
        yield


async def _seller_store(
    app: web.Application, stack: AsyncExitStack, redis: aioredis.Redis, cipher: TokenCipher
) -> ChangelogSellerStore:
    """The sellers' changelog and Redis view; the view is restored in the background."""
    settings, o = app[settings_key], app[overrides_key]
    view = RedisSellerStore(redis, o.namespace, cipher)
    changelog = Changelog(
        settings.kafka,
        o.changelog_topic,
        view=view,
        marker=RedisViewMarker(redis, o.namespace, "sellers"),
        check_every_s=settings.view_check_every_s,
    )
    app[changelog_key] = await stack.enter_async_context(changelog)
    counting = asyncio.create_task(
        _count_statuses(view, settings.status_count_every_s), name="auth-status-count"
    )
    stack.push_async_callback(_cancel, counting)
    return ChangelogSellerStore(view, changelog)


async def _count_statuses(view: RedisSellerStore, every_s: float) -> None:
    """Keep the gauge of sellers in ``reauth_required`` current (every replica counts)."""
    while True:
        try:
            counts = await view.count_by_status()
        except CacheUnavailable as exc:
            log.warning("sellers not counted: %s", exc)
        else:
            metrics.SELLERS_REAUTH_REQUIRED.set(counts["reauth_required"])
        await asyncio.sleep(every_s)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task


async def readyz(request: web.Request) -> web.StreamResponse:
    """Ready when Redis answers and the sellers' view is restored.

    The Kafka clients are up once the app has started.
    """
    redis = request.app.get(redis_key)
    if redis is not None:
        try:
            await redis.ping()
        except RedisError:
            return web.json_response({"status": "redis unavailable"}, status=503)
    changelog = request.app.get(changelog_key)
    if changelog is not None and not changelog.ready:
        return web.json_response(
            {"status": changelog.state.value, "restore": changelog.progress.as_dict()},
            status=503,
        )
    return web.json_response({"status": "ready"})
