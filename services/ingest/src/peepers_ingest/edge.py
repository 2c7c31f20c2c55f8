"""Ingest's edge: every answer JSON, a bug a logged 500, every request counted and timed.

Without middleware: aiohttp runs each middleware as two more coroutines and a partial on
every request, and a middleware finds the request's route and its metric series each time.
At saturation that was 8 µs of a webhook's ~135 µs of CPU (bench/ingest.py). So each
route's handler is wrapped once, when the route is added, with its route's series looked
up then; a catch-all route, added last, answers what matches no route (a JSON 404, or 405
with ``Allow``) through the same wrapper.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from peepers_common.errors import ServiceUnauthorized
from peepers_common.metrics import RecordRoute, route_metrics_recorder

__all__ = ["EdgeRoutes"]

log = logging.getLogger(__name__)

UNMATCHED = "unmatched"


def _at_the_edge(handler: Handler, record: RecordRoute) -> Handler:
    async def edge(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.empty_body or exc.status < 400:
                record(exc.status, started)
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
        record(response.status, started)
        return response

    return edge


class EdgeRoutes:
    """Adds routes whose handlers run at the edge; `close` adds the catch-all, last."""

    def __init__(self, app: web.Application, service: str) -> None:
        self._app = app
        self._service = service
        self._closed = False

    def add(self, method: str, path: str, handler: Handler, *, timed: bool = True) -> None:
        """``timed=False``: counted, not timed (the webhook's latency is its ack histogram)."""
        if self._closed:
            # aiohttp tries resources in the order they were added: the catch-all would
            # answer this route's requests with a 404 (or a 405) and it would never run.
            msg = f"route {method} {path} added after the catch-all: add it before close()"
            raise RuntimeError(msg)
        record = route_metrics_recorder(self._service, path, timed=timed)
        wrapped = _at_the_edge(handler, record)
        resource = self._app.router.add_resource(path)
        if method == "GET":  # as aiohttp's add_get does
            resource.add_route("HEAD", wrapped)
        resource.add_route(method, wrapped)

    def close(self) -> None:
        self._closed = True
        # (?s:...): a plain ``.`` stops at a newline, so a path with ``%0A`` in it missed
        # the catch-all and got aiohttp's own plain-text 404.
        catch_all = self._app.router.add_resource("/{unmatched_path:(?s:.*)}")

        async def unmatched(request: web.Request) -> web.StreamResponse:
            allowed: set[str] = set()
            for resource in request.app.router.resources():
                if resource is not catch_all:
                    _, methods = await resource.resolve(request)
                    allowed |= methods
            if allowed:
                raise web.HTTPMethodNotAllowed(request.method, allowed)
            raise web.HTTPNotFound

        record = route_metrics_recorder(self._service, UNMATCHED)
        catch_all.add_route("*", _at_the_edge(unmatched, record))
