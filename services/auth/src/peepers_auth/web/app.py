"""The seller web app's composition: ``create_web_app(settings)``, its own process.

It shares the auth package (the session belongs to auth) but none of the auth process's
secrets: its clients are a Redis connection as the ``auth-web`` ACL user (sessions
only), a Kafka consumer of the public topics, and HTTP clients of the read APIs. Tests
pass fakes for any of them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Final

import aiohttp
import jinja2
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from peepers_auth.adapters.redis_store import RedisSessions
from peepers_auth.errors import AuthError, SessionRequired
from peepers_auth.ports import Sessions
from peepers_auth.web import views
from peepers_auth.web.adapters.live_feed import live_feed
from peepers_auth.web.adapters.read_apis import (
    HttpCatalog,
    HttpMessages,
    HttpOrders,
    ReadApiClient,
)
from peepers_auth.web.live import LiveHub
from peepers_auth.web.ports import Readers, WebError
from peepers_auth.web.security import (
    hub_key,
    locale_of,
    security_headers,
    session_middleware,
    sessions_key,
    web_settings_key,
)
from peepers_auth.web.settings import WebSettings
from peepers_common.errors import CacheUnavailable
from peepers_common.metrics import http_metrics_middleware, metrics_view
from peepers_common.namespaces import Namespace, connect_redis
from peepers_common.topics import PEEPERS_CATALOG, PEEPERS_MESSAGES, PEEPERS_ORDERS, PEEPERS_SELLERS

log = logging.getLogger(__name__)

SERVICE: Final = "auth-web"
LIVE_TOPICS: Final = (PEEPERS_ORDERS, PEEPERS_MESSAGES, PEEPERS_CATALOG)


@dataclass(frozen=True)
class _Overrides:
    sessions: Sessions | None
    readers: Readers | None
    namespace: Namespace
    live_topics: Sequence[str]
    sellers_topic: str
    follow_kafka: bool


overrides_key: Final = web.AppKey("web_overrides_key", _Overrides)


def templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("peepers_auth.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.tests["unavailable"] = lambda value: isinstance(value, views.Unavailable)
    env.globals["without"] = lambda form, name: {k: v for k, v in form.items() if k != name}
    return env


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The one place this app's errors become pages (HTML, in the seller's language)."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except (AuthError, WebError, CacheUnavailable) as exc:
        if isinstance(exc, AuthError):
            status, title = exc.status, exc.title
        else:
            status, title = 503, "Service not available"
            log.warning("%s %s -> 503: %s", request.method, request.path, exc)
        locale = locale_of(request)
        page = views.render(
            request,
            "error.html",
            title=locale.text(title),
            status=status,
            login=isinstance(exc, SessionRequired),
            locale=locale,
        )
        return web.Response(text=page, status=status, content_type="text/html")


def _headers_middleware(settings: WebSettings) -> Middleware:
    headers = security_headers(settings)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(headers)
            raise
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        if not request.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    return middleware


def create_web_app(
    settings: WebSettings,
    *,
    sessions: Sessions | None = None,
    readers: Readers | None = None,
    namespace: Namespace | None = None,
    live_topics: Sequence[str] = LIVE_TOPICS,
    sellers_topic: str = PEEPERS_SELLERS,
    follow_kafka: bool = True,
) -> web.Application:
    app = web.Application(
        middlewares=[
            _headers_middleware(settings),
            http_metrics_middleware(SERVICE),
            error_middleware,
            session_middleware,
        ],
        client_max_size=64 * 1024,
    )
    app[web_settings_key] = settings
    app[hub_key] = LiveHub(settings.live_buffer_per_seller, settings.live_replay_s)
    app[views.templates_key] = templates()
    app[overrides_key] = _Overrides(
        sessions, readers, namespace or Namespace("auth"), live_topics, sellers_topic, follow_kafka
    )
    app.cleanup_ctx.append(_dependencies_ctx)
    app.on_shutdown.append(_end_streams)
    views.setup_routes(app)
    static = Path(str(files("peepers_auth.web") / "static"))
    app.router.add_static("/static/", static, append_version=False)
    app.router.add_get("/metrics", metrics_view)
    return app


async def _end_streams(app: web.Application) -> None:
    app[hub_key].close()


async def _dependencies_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[web_settings_key]
    o = app[overrides_key]
    async with AsyncExitStack() as stack:
        sessions = o.sessions
        if sessions is None:
            redis = connect_redis(settings.redis)
            stack.push_async_callback(redis.aclose)
            app[views.redis_key] = redis
            sessions = RedisSessions(redis, o.namespace)
        app[sessions_key] = sessions
        readers = o.readers
        if readers is None:
            http = await stack.enter_async_context(aiohttp.ClientSession())
            auth = aiohttp.encode_basic_auth(
                settings.service_name, settings.service_secret.get_secret_value()
            )
            clients = {
                name: ReadApiClient(name, getattr(settings, name), http, auth)
                for name in ("catalog", "orders", "messages")
            }
            readers = Readers(
                HttpCatalog(clients["catalog"]),
                HttpOrders(clients["orders"]),
                HttpMessages(clients["messages"]),
                ready=clients,
            )
        app[views.readers_key] = readers
        if o.follow_kafka:
            app[views.feed_key] = await stack.enter_async_context(
                live_feed(
                    settings.kafka,
                    app[hub_key],
                    topics=o.live_topics,
                    sellers_topic=o.sellers_topic,
                    replay_s=settings.live_replay_s,
                )
            )
        yield
