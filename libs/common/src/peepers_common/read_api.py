"""A consumer's HTTP read API: one error mapping, service credentials, probes and metrics.

`read_api` builds the aiohttp app every Faust worker serves beside its agents::

    app = read_api("orders", credentials=settings.service_credentials, ready=readiness)
    app.router.add_get("/orders/...", view)

* Every error is ``{"error": code, "detail": ...}``: `InvalidQuery` 400,
  `ServiceUnauthorized` 401 (with ``WWW-Authenticate``), `CacheUnavailable` 503, aiohttp's
  own HTTP errors with their status.
* Every path but ``/healthz``, ``/readyz`` and ``/metrics`` needs HTTP Basic service
  credentials (`peepers_common.service_auth`).
* ``/readyz`` calls ``ready``, which returns a JSON-able status and whether it is ready.
* A service's own ``middlewares`` run outside the error mapping (they see its answers).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from pydantic import SecretStr

from peepers_common.errors import CacheUnavailable, InvalidQuery, ServiceUnauthorized
from peepers_common.metrics import http_metrics_middleware, metrics_view
from peepers_common.service_auth import authenticate_service

__all__ = ["OPEN_PATHS", "Readiness", "error_response", "read_api", "serve"]

log = logging.getLogger(__name__)

Readiness = Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]

OPEN_PATHS: Final = frozenset({"/healthz", "/readyz", "/metrics"})
_credentials_key: Final = web.AppKey[Mapping[str, SecretStr]]("credentials_key")
_ready_key: Final = web.AppKey[Readiness]("ready_key")


def error_response(status: int, code: str, detail: str, **headers: str) -> web.Response:
    return web.json_response(
        {"error": code, "detail": detail},
        status=status,
        headers={"Cache-Control": "no-store", **headers},
    )


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
    except InvalidQuery as exc:
        return error_response(400, "bad_request", str(exc))
    except ServiceUnauthorized as exc:
        return error_response(
            401, "unauthorized", str(exc), **{"WWW-Authenticate": 'Basic realm="peepers"'}
        )
    except CacheUnavailable as exc:
        log.error("%s %s failed: %s", request.method, request.path, exc)
        return error_response(503, "storage_unavailable", "the cache is not answering")


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path not in OPEN_PATHS:
        authenticate_service(request.app[_credentials_key], request.headers.get("Authorization"))
    return await handler(request)


async def _healthz(_request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.StreamResponse:
    try:
        ready, body = await request.app[_ready_key]()
    except CacheUnavailable:
        return web.json_response({"status": "redis unavailable"}, status=503)
    return web.json_response(body, status=200 if ready else 503)


def read_api(
    service: str,
    *,
    credentials: Mapping[str, SecretStr],
    ready: Readiness,
    middlewares: Sequence[Middleware] = (),
) -> web.Application:
    """An app with the error mapping, authentication, probes and metrics; add the routes."""
    app = web.Application(
        middlewares=[http_metrics_middleware(service), *middlewares, _errors, _auth]
    )
    app[_credentials_key] = credentials
    app[_ready_key] = ready
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", metrics_view)
    return app


async def serve(app: web.Application, stack: AsyncExitStack, host: str, port: int) -> None:
    """Serve ``app`` on ``host:port`` beside the worker's agents, until ``stack`` closes."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    await web.TCPSite(runner, host, port).start()
