"""The one error middleware: every answer is JSON, and a bug is a logged 500, never a crash."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from peepers_common.errors import ServiceUnauthorized

__all__ = ["error_middleware"]

log = logging.getLogger(__name__)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.empty_body or exc.status < 400:
            raise
        return web.json_response(
            {"error": exc.reason.lower().replace(" ", "_"), "detail": exc.text},
            status=exc.status,
            headers={k: v for k, v in exc.headers.items() if k.lower() == "allow"},
        )
    except ServiceUnauthorized as exc:
        return web.json_response(
            {"error": "unauthorized", "detail": str(exc)},
            status=401,
            headers={"WWW-Authenticate": 'Basic realm="peepers-internal"'},
        )
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.rel_url.path)
        return web.json_response(
            {"error": "internal_error", "detail": "see the service log"}, status=500
        )
