"""Ingest's one middleware: JSON answers, a bug a logged 500, every request timed.

Every answer is JSON, a bug is a logged 500 (never a crash), and every request is counted
and timed by route (`peepers_common.metrics`). One middleware rather than an error
middleware inside a metrics middleware: each layer costs every webhook a few
microseconds (aiohttp wraps each in two coroutines).
"""

from __future__ import annotations

import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from peepers_common.errors import ServiceUnauthorized
from peepers_common.metrics import http_metrics_recorder

__all__ = ["edge_middleware"]

log = logging.getLogger(__name__)


def edge_middleware(service: str) -> Middleware:
    record = http_metrics_recorder(service)

    @web.middleware
    async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.empty_body or exc.status < 400:
                record(request, exc.status, started)
                raise
            response = web.json_response(
                {"error": exc.reason.lower().replace(" ", "_"), "detail": exc.text},
                status=exc.status,
                headers={k: v for k, v in exc.headers.items() if k.lower() == "allow"},
            )
        except ServiceUnauthorized as exc:
            response = web.json_response(
                {"error": "unauthorized", "detail": str(exc)},
                status=401,
                headers={"WWW-Authenticate": 'Basic realm="peepers-internal"'},
            )
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.rel_url.path)
            response = web.json_response(
                {"error": "internal_error", "detail": "see the service log"}, status=500
            )
        record(request, response.status, started)
        return response

    return edge
