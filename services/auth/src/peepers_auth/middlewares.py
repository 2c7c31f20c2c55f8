"""The error middleware (the only place errors become responses) and per-request context."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from peepers_auth import pages
from peepers_auth.crypto import TokenDecryptionFailed
from peepers_auth.errors import AuthError
from peepers_common.errors import (
    InfrastructureError,
    MlApiError,
    ReauthRequired,
    ServiceUnauthorized,
    TokenUnavailable,
)
from peepers_common.tracing import TraceContext, bind_trace, current_trace

log = logging.getLogger(__name__)

INTERNAL_PREFIX = "/internal/"


def _describe(exc: Exception) -> tuple[int, str, str]:
    """(status, code, title) of an error the service expects to happen."""
    if isinstance(exc, AuthError):
        return exc.status, exc.code, exc.title
    if isinstance(exc, ServiceUnauthorized):
        return 401, "unauthorized", "Something went wrong"
    if isinstance(exc, ReauthRequired):
        return 409, "reauth_required", "Mercado Livre refused the authorization"
    if isinstance(exc, TokenUnavailable):
        return 503, "ml_unavailable", "Mercado Livre is not answering"
    if isinstance(exc, MlApiError):
        return 502, "ml_error", "Mercado Livre answered with an error"
    if isinstance(exc, InfrastructureError):  # Redis, or Kafka refused a changelog write
        return 503, "storage_unavailable", "Peepers is having trouble; try again shortly"
    if isinstance(exc, TokenDecryptionFailed):
        return 500, "token_keys", "Peepers cannot read its stored credentials"
    raise exc


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except (AuthError, ServiceUnauthorized, ReauthRequired, TokenUnavailable, MlApiError) as exc:
        status, code, title = _describe(exc)
        detail = str(exc)
    except (InfrastructureError, TokenDecryptionFailed) as exc:
        status, code, title = _describe(exc)
        detail = title
        log.error("%s %s failed: %s", request.method, request.path, exc)
    if status >= 500:
        log.warning("%s %s -> %s %s", request.method, request.path, status, code)
    if request.path.startswith(INTERNAL_PREFIX):
        headers = {"Cache-Control": "no-store"}
        if status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="peepers-internal"'
        return web.json_response({"error": code, "detail": detail}, status=status, headers=headers)
    return web.Response(text=pages.error(title, detail), status=status, content_type="text/html")


# Pages carry no scripts and no third-party content. The callback URL holds a code and a
# state, so no Referer may leave for another origin; "same-origin" rather than
# "no-referrer" because under no-referrer browsers send `Origin: null` on our own form
# posts, and the Origin check needs the real one.
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


@web.middleware
async def context_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bind the caller's trace (or a new one) and add the security headers."""
    parent = TraceContext.parse(request.headers.get("traceparent"))
    token = bind_trace(parent.child() if parent else TraceContext.new())
    try:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(_SECURITY_HEADERS)
            raise
        for name, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response
    finally:
        current_trace.reset(token)
