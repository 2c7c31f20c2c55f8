"""Prometheus helpers every service uses.

Metrics are module-level objects in the service that owns them (the default registry), so
building an app twice in tests never registers a metric twice. This module holds what all
services share: bucket layouts, the HTTP middleware and the ``/metrics`` view.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

# Sub-millisecond to a few seconds: webhook acks must stay far below ML's 500 ms.
LATENCY_BUCKETS_S: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

HTTP_REQUESTS: Final = Counter(
    "peepers_http_requests_total",
    "HTTP requests served, by service, route and status",
    ["service", "route", "status"],
)
HTTP_LATENCY: Final = Histogram(
    "peepers_http_request_duration_seconds",
    "HTTP request latency, by service and route",
    ["service", "route"],
    buckets=LATENCY_BUCKETS_S,
)


RecordRoute = Callable[[int, float], None]


def route_metrics_recorder(service: str, route: str, *, timed: bool = True) -> RecordRoute:
    """``record(status, started)``: count and time one request of ``route`` (a template).

    ``started`` is a ``time.perf_counter()``. The route's series are looked up once, here:
    for a service that wraps each route's handler itself (ingest) instead of a middleware.
    ``timed=False`` only counts, for a route whose service times it by a finer measure.
    """
    latency = HTTP_LATENCY.labels(service, route)
    # Statuses are few: each series is looked up once, not on every request.
    requests = functools.cache(functools.partial(HTTP_REQUESTS.labels, service, route))

    def record(status: int, started: float) -> None:
        latency.observe(time.perf_counter() - started)
        requests(status).inc()

    def count(status: int, _started: float) -> None:
        requests(status).inc()

    return record if timed else count


def http_metrics_middleware(service: str) -> Middleware:
    """Count and time every request by its route template (never the raw path)."""
    by_route = functools.cache(functools.partial(route_metrics_recorder, service))

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            route = request.match_info.route.resource
            by_route(route.canonical if route is not None else "unmatched")(status, start)

    return middleware


async def metrics_view(_request: web.Request) -> web.Response:
    response = web.Response(body=generate_latest())
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    response.charset = "utf-8"
    return response
