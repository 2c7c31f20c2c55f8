"""HTTP views: parse the request, call a handler, shape the response. Nothing decides here."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import BaseModel, ValidationError

from peepers_auth import handlers, pages
from peepers_auth.errors import CsrfRejected, SellerNotConnected
from peepers_auth.handlers import AuthDeps
from peepers_auth.settings import Settings
from peepers_common.metrics import metrics_view
from peepers_common.service_auth import authenticate_service

SESSION_COOKIE: Final = "peepers_session"
LOGIN_COOKIE: Final = "peepers_login"
CALLBACK_PATH: Final = "/auth/callback"

deps_key: Final = web.AppKey("deps_key", AuthDeps)
settings_key: Final = web.AppKey("settings_key", Settings)


def _deps(request: web.Request) -> AuthDeps:
    return request.app[deps_key]


def _set_cookie(
    response: web.StreamResponse,
    settings: Settings,
    name: str,
    value: str,
    *,
    max_age: int,
    path: str = "/",
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=path,
        httponly=True,
        secure=settings.cookie_secure,
        # Lax: the cookie rides along ML's top-level redirect back to the callback, but
        # never on a cross-site POST.
        samesite="Lax",
    )


# --------------------------------------------------------------------------- seller pages


def _redirect(location: str, status: int = 303) -> web.Response:
    # A returned response (not a raised HTTPFound) so cookies set on it are kept as is.
    return web.Response(status=status, headers={"Location": location})


async def landing(request: web.Request) -> web.StreamResponse:
    settings = _deps(request).settings
    sites = sorted(settings.oauth.auth_base_urls)
    return web.Response(
        text=pages.landing(sites, settings.oauth.default_site), content_type="text/html"
    )


async def login(request: web.Request) -> web.StreamResponse:
    deps = _deps(request)
    started = await handlers.start_login(deps, request.query.get("site"))
    response = _redirect(started.authorization_url, 302)
    _set_cookie(
        response,
        deps.settings,
        LOGIN_COOKIE,
        started.browser_nonce,
        max_age=deps.settings.login_state_ttl_s,
        path=CALLBACK_PATH,
    )
    return response


async def callback(request: web.Request) -> web.StreamResponse:
    deps = _deps(request)
    query = request.query
    done = await handlers.complete_login(
        deps,
        state=query.get("state"),
        code=query.get("code"),
        error=query.get("error"),
        error_description=query.get("error_description"),
        browser_nonce=request.cookies.get(LOGIN_COOKIE),
    )
    response = _redirect(deps.settings.dashboard_url)
    _set_cookie(
        response,
        deps.settings,
        SESSION_COOKIE,
        done.session_id,
        max_age=deps.settings.session_ttl_s,
    )
    response.del_cookie(LOGIN_COOKIE, path=CALLBACK_PATH)
    return response


async def dashboard(request: web.Request) -> web.StreamResponse:
    deps = _deps(request)
    view = await handlers.dashboard(deps, request.cookies.get(SESSION_COOKIE))
    return web.Response(
        text=pages.dashboard(
            view.session.seller_id, view.seller, view.session.csrf_token.get_secret_value()
        ),
        content_type="text/html",
    )


def _check_origin(request: web.Request, settings: Settings) -> None:
    # Defence in depth beside the CSRF token: a browser always sends Origin on a form
    # POST, and a cross-site one never carries ours.
    origin = request.headers.get("Origin")
    if origin is None:
        return
    public = urlsplit(settings.public_base_url)
    if origin != f"{public.scheme}://{public.netloc}":
        msg = "this form was posted from another site"
        raise CsrfRejected(msg)


async def _csrf_field(request: web.Request) -> str | None:
    form = await request.post()
    value = form.get("csrf_token")
    return value if isinstance(value, str) else None


async def logout(request: web.Request) -> web.StreamResponse:
    deps = _deps(request)
    _check_origin(request, deps.settings)
    await handlers.logout(deps, request.cookies.get(SESSION_COOKIE), await _csrf_field(request))
    response = _redirect("/auth/")
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


async def disconnect(request: web.Request) -> web.StreamResponse:
    deps = _deps(request)
    _check_origin(request, deps.settings)
    await handlers.disconnect(deps, request.cookies.get(SESSION_COOKIE), await _csrf_field(request))
    response = _redirect("/auth/")
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


# --------------------------------------------------------------------------- token broker


def _seller_id(request: web.Request) -> int:
    raw = request.match_info["seller_id"]
    if not raw.isdigit():
        msg = f"{raw!r} is not a seller id"
        raise SellerNotConnected(msg)
    return int(raw)


def _token_response(grant: handlers.TokenGrant, now: float) -> web.Response:
    return web.json_response(
        {
            "seller_id": grant.seller_id,
            "access_token": grant.access_token.get_secret_value(),
            "token_type": "Bearer",
            "expires_at": datetime.fromtimestamp(grant.expires_at, tz=UTC).isoformat(),
            "expires_in": max(0, int(grant.expires_at - now)),
        },
        headers={"Cache-Control": "no-store"},
    )


async def get_token(request: web.Request) -> web.StreamResponse:
    deps = _deps(request)
    authenticate_service(deps.settings.service_credentials, request.headers.get("Authorization"))
    grant = await handlers.access_token(deps, _seller_id(request))
    return _token_response(grant, deps.clock())


class _RefreshBody(BaseModel):
    stale_token: str | None = None


async def refresh_token(request: web.Request) -> web.StreamResponse:
    deps = _deps(request)
    authenticate_service(deps.settings.service_credentials, request.headers.get("Authorization"))
    seller_id = _seller_id(request)
    body = _RefreshBody()
    if request.can_read_body:
        try:
            body = _RefreshBody.model_validate_json(await request.read())
        except ValidationError:
            raise web.HTTPBadRequest(
                text='{"error":"bad_request","detail":"body is {\\"stale_token\\": str}"}',
                content_type="application/json",
            ) from None
    grant = await handlers.force_refresh(deps, seller_id, body.stale_token)
    return _token_response(grant, deps.clock())


# --------------------------------------------------------------------------- operations


async def healthz(_request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"})


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/", landing)
    r.add_get("/auth/", landing)
    r.add_get("/auth/login", login)
    r.add_get(CALLBACK_PATH, callback)
    r.add_get("/auth/dashboard", dashboard)
    r.add_post("/auth/logout", logout)
    r.add_post("/auth/disconnect", disconnect)
    r.add_get("/internal/sellers/{seller_id}/token", get_token)
    r.add_post("/internal/sellers/{seller_id}/token/refresh", refresh_token)
    r.add_get("/healthz", healthz)
    r.add_get("/metrics", metrics_view)
