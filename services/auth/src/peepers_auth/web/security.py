"""Who is asking, and may they: the session, CSRF, the Origin check and the response headers.

Pages need the session cookie the auth process set at login (the web process reads the
session, never writes one). Every state-changing request carries the session's CSRF
token, as a form field or the ``X-CSRF-Token`` header htmx sends, and, when the browser
sends one, the web app's own Origin. No script runs inline: the Content-Security-Policy
allows scripts and styles from this origin only.
"""

from __future__ import annotations

import hmac
from typing import Final
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler

from peepers_auth.errors import CsrfRejected, SessionRequired
from peepers_auth.models import Session
from peepers_auth.ports import Sessions
from peepers_auth.web.i18n import Locale, parse_language
from peepers_auth.web.live import LiveHub
from peepers_auth.web.settings import WebSettings

SESSION_COOKIE: Final = "peepers_session"  # set by the auth process (views.SESSION_COOKIE)
LANGUAGE_COOKIE: Final = "peepers_lang"
CSRF_HEADER: Final = "X-CSRF-Token"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
# Paths that need no session: probes, metrics, the vendored assets.
OPEN_PREFIXES: Final = ("/static/", "/healthz", "/readyz", "/metrics")

web_settings_key: Final = web.AppKey("web_settings_key", WebSettings)
sessions_key: Final = web.AppKey("sessions_key", Sessions)
hub_key: Final = web.AppKey("hub_key", LiveHub)
session_key: Final = web.RequestKey("session_key", Session)
session_id_key: Final = web.RequestKey("session_id_key", str)
locale_key: Final = web.RequestKey("locale_key", Locale)


def content_security_policy(settings: WebSettings) -> str:
    auth = urlsplit(settings.auth_base_url)
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; "
        f"connect-src 'self'; form-action 'self' {auth.scheme}://{auth.netloc}; "
        "frame-ancestors 'none'; base-uri 'none'"
    )


def _check_origin(request: web.Request, settings: WebSettings) -> None:
    origin = request.headers.get("Origin")
    if origin is None:
        return
    public = urlsplit(settings.public_base_url)
    if origin != f"{public.scheme}://{public.netloc}":
        msg = "this request came from another site"
        raise CsrfRejected(msg)


async def _csrf_token(request: web.Request) -> str | None:
    header = request.headers.get(CSRF_HEADER)
    if header is not None:
        return header
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        value = (await request.post()).get("csrf_token")
        return value if isinstance(value, str) else None
    return None


def locale_of(request: web.Request) -> Locale:
    settings = request.app[web_settings_key]
    language = parse_language(
        request.query.get("lang") or request.cookies.get(LANGUAGE_COOKIE),
        settings.default_language,
    )
    site = settings.default_site
    session = request.get(session_key)
    if session is not None:
        status = request.app[hub_key].statuses.get(session.seller_id)
        if status is not None and status.site_id:
            site = status.site_id
    return Locale(language, site)


@web.middleware
async def session_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The seller's session on every page; CSRF and Origin on every state change."""
    if request.path.startswith(OPEN_PREFIXES):
        return await handler(request)
    settings = request.app[web_settings_key]
    session_id = request.cookies.get(SESSION_COOKIE)
    session = await request.app[sessions_key].get(session_id) if session_id else None
    if session_id is None or session is None:
        msg = "log in with Mercado Livre to see this page"
        raise SessionRequired(msg)
    request[session_key] = session
    request[session_id_key] = session_id
    request[locale_key] = locale_of(request)
    if request.method not in SAFE_METHODS:
        _check_origin(request, settings)
        expected = session.csrf_token.get_secret_value().encode()
        given = await _csrf_token(request)
        if given is None or not hmac.compare_digest(expected, given.encode()):
            msg = "the form's CSRF token does not match your session; reload the page"
            raise CsrfRejected(msg)
    response = await handler(request)
    if "lang" in request.query:
        response.set_cookie(
            LANGUAGE_COOKIE,
            request[locale_key].language,
            max_age=365 * 86400,
            httponly=True,
            secure=settings.cookie_secure,
            samesite="Lax",
        )
    return response


def security_headers(settings: WebSettings) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(settings),
        "Referrer-Policy": "same-origin",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
    }
