"""OAuth 2.0 as ML runs it: authorization codes, PKCE, 6-hour tokens, rotating refresh.

A grant is one (application, user) authorization. It holds the only refresh token that
may be spent; spending it mints a new pair and retires the old refresh token. Revoking
the grant (the user unlinks the app) kills its access tokens and its refresh token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from peepers_sandbox.clock import Clock
from peepers_sandbox.config import ApiConfig, AppConfig
from peepers_sandbox.errors import json_response

_GRANT_ERROR = (
    "Error validating grant. "
    "Your authorization code or refresh token may be expired or it was already used"
)
SCOPE = "offline_access read write"


@dataclass
class AuthCode:
    code: str
    app_id: int
    user_id: int
    redirect_uri: str
    expires_at: float
    challenge: str | None
    method: str | None


@dataclass
class Grant:
    app_id: int
    user_id: int
    refresh_token: str
    refresh_expires_at: float
    revoked: bool = False
    access_tokens: set[str] = field(default_factory=set)


@dataclass
class AccessToken:
    token: str
    app_id: int
    user_id: int
    expires_at: float
    grant: Grant


class OAuthError(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description

    def response(self) -> web.Response:
        body = {
            "error_description": self.description,
            "error": self.error,
            "status": self.status,
            "cause": [],
        }
        return json_response(body, status=self.status)


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class OAuthServer:
    def __init__(self, apps: list[AppConfig], api: ApiConfig, clock: Clock) -> None:
        self.apps: dict[int, AppConfig] = {app.app_id: app for app in apps}
        self.api = api
        self.clock = clock
        self.codes: dict[str, AuthCode] = {}
        self.grants: dict[tuple[int, int], Grant] = {}
        self.tokens: dict[str, AccessToken] = {}
        self.refresh_index: dict[str, Grant] = {}

    # ------------------------------------------------------------------ minting
    def _access_token(self, app_id: int, user_id: int) -> str:
        stamp = datetime.fromtimestamp(self.clock.now(), tz=UTC).strftime("%m%d%H")
        return f"APP_USR-{app_id}-{stamp}-{secrets.token_hex(16)}-{user_id}"

    @staticmethod
    def _tg(user_id: int) -> str:
        return f"TG-{secrets.token_hex(12)}-{user_id}"

    def issue(self, app_id: int, user_id: int, *, ttl_s: int | None = None) -> dict[str, Any]:
        """Mint a token pair for ``user_id``, replacing any earlier grant of the app."""
        now = self.clock.now()
        old = self.grants.get((app_id, user_id))
        if old is not None:
            self.refresh_index.pop(old.refresh_token, None)
        grant = Grant(app_id, user_id, self._tg(user_id), now + self.api.refresh_token_ttl_s)
        if old is not None and not old.revoked:
            grant.access_tokens = old.access_tokens
        self.grants[(app_id, user_id)] = grant
        self.refresh_index[grant.refresh_token] = grant
        return self._pair(grant, ttl_s)

    def _pair(self, grant: Grant, ttl_s: int | None) -> dict[str, Any]:
        ttl = ttl_s if ttl_s is not None else self.api.access_token_ttl_s
        token = self._access_token(grant.app_id, grant.user_id)
        self.tokens[token] = AccessToken(
            token, grant.app_id, grant.user_id, self.clock.now() + ttl, grant
        )
        grant.access_tokens.add(token)
        return {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": ttl,
            "scope": SCOPE,
            "user_id": grant.user_id,
            "refresh_token": grant.refresh_token,
        }

    def revoke(self, user_id: int, app_id: int | None = None) -> int:
        count = 0
        for (g_app, g_user), grant in self.grants.items():
            if g_user == user_id and (app_id is None or g_app == app_id) and not grant.revoked:
                grant.revoked = True
                self.refresh_index.pop(grant.refresh_token, None)
                for token in grant.access_tokens:
                    self.tokens.pop(token, None)
                grant.access_tokens.clear()
                count += 1
        return count

    def expire(self, token: str) -> bool:
        record = self.tokens.get(token)
        if record is None:
            return False
        record.expires_at = self.clock.now() - 1
        return True

    def lookup(self, token: str) -> AccessToken | None:
        """The live access token, or None when unknown, revoked or expired."""
        record = self.tokens.get(token)
        if record is None or record.grant.revoked:
            return None
        if record.expires_at <= self.clock.now():
            return None
        return record

    def has_grant(self, app_id: int, user_id: int) -> bool:
        grant = self.grants.get((app_id, user_id))
        return grant is not None and not grant.revoked

    # ------------------------------------------------------------------ authorization
    def _check_authorize(self, params: dict[str, str]) -> AppConfig:
        try:
            app = self.apps[int(params.get("client_id", ""))]
        except (KeyError, ValueError):
            msg = "Sorry, the application cannot connect to your account. (unknown client_id)"
            raise web.HTTPBadRequest(text=_page("Erro", msg), content_type="text/html") from None
        if params.get("redirect_uri") not in app.redirect_uris:
            msg = "your client callback has to match with the redirect_uri param"
            raise web.HTTPBadRequest(text=_page("Erro", msg), content_type="text/html")
        if params.get("response_type") != "code":
            self._redirect_error(params, "unsupported_response_type", "response_type must be code")
        method = params.get("code_challenge_method") or (
            "plain" if params.get("code_challenge") else None
        )
        if params.get("code_challenge") and method not in ("S256", "plain"):
            self._redirect_error(
                params, "invalid_request", "code_challenge_method must be S256 or plain"
            )
        if app.pkce_required and not params.get("code_challenge"):
            self._redirect_error(
                params, "invalid_request", "code_challenge is required for this application"
            )
        return app

    @staticmethod
    def _redirect_error(params: dict[str, str], error: str, description: str) -> None:
        query = {"error": error, "error_description": description}
        if params.get("state"):
            query["state"] = params["state"]
        msg = f"{params['redirect_uri']}?{urlencode(query)}"
        raise web.HTTPFound(msg)

    def _approve(self, params: dict[str, str], user_id: int) -> web.HTTPFound:
        app = self._check_authorize(params)
        code = self._tg(user_id)
        challenge = params.get("code_challenge") or None
        method = (params.get("code_challenge_method") or "plain") if challenge else None
        self.codes[code] = AuthCode(
            code,
            app.app_id,
            user_id,
            params["redirect_uri"],
            self.clock.now() + self.api.auth_code_ttl_s,
            challenge,
            method,
        )
        query = {"code": code}
        if params.get("state"):
            query["state"] = params["state"]
        return web.HTTPFound(f"{params['redirect_uri']}?{urlencode(query)}")

    async def authorize_page(self, request: web.Request) -> web.StreamResponse:
        params = dict(request.query)
        app = self._check_authorize(params)
        login_as = params.pop("login_as", None)
        if self.api.auto_approve:
            raise self._approve(params, int(login_as or self.api.auto_approve_user_id))
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in params.items()
        )
        user = html.escape(login_as or str(self.api.auto_approve_user_id))
        body = (
            f"<p>O aplicativo <strong>{html.escape(app.name)}</strong> "
            "quer acessar sua conta do Mercado Livre.</p>"
            f'<form method="post" action="/authorization">{hidden}'
            f'<label>Usuário (user_id) <input name="user_id" value="{user}"></label>'
            '<button type="submit" name="decision" value="approve">Permitir</button>'
            '<button type="submit" name="decision" value="deny">Cancelar</button></form>'
        )
        return web.Response(text=_page("Autorizar aplicativo", body), content_type="text/html")

    async def authorize_submit(self, request: web.Request) -> web.StreamResponse:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        decision = form.pop("decision", "deny")
        user_id = form.pop("user_id", "")
        self._check_authorize(form)
        if decision != "approve":
            self._redirect_error(form, "access_denied", "The user denied the authorization")
        try:
            uid = int(user_id)
        except ValueError:
            raise web.HTTPBadRequest(
                text=_page("Erro", "invalid user_id"), content_type="text/html"
            ) from None
        raise self._approve(form, uid)

    # ------------------------------------------------------------------ token endpoint
    async def token(self, request: web.Request) -> web.StreamResponse:
        try:
            return json_response(await self._token(request))
        except OAuthError as exc:
            return exc.response()

    async def _token(self, request: web.Request) -> dict[str, Any]:
        if request.content_type != "application/x-www-form-urlencoded":
            raise OAuthError(
                400, "invalid_request", "content-type must be application/x-www-form-urlencoded"
            )
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        grant_type = form.get("grant_type")
        if not grant_type:
            raise OAuthError(400, "invalid_request", "grant_type is required")
        if grant_type not in ("authorization_code", "refresh_token"):
            raise OAuthError(
                400, "unsupported_grant_type", f"grant_type {grant_type} is not supported"
            )
        app = self._client(form)
        if grant_type == "authorization_code":
            return self._code_grant(app, form)
        return self._refresh_grant(app, form)

    def _client(self, form: dict[str, str]) -> AppConfig:
        try:
            app = self.apps[int(form.get("client_id", ""))]
        except (KeyError, ValueError):
            raise OAuthError(401, "invalid_client", "invalid client_id or client_secret") from None
        if not hmac.compare_digest(form.get("client_secret", ""), app.client_secret):
            raise OAuthError(401, "invalid_client", "invalid client_id or client_secret")
        return app

    def _code_grant(self, app: AppConfig, form: dict[str, str]) -> dict[str, Any]:
        code = self.codes.pop(form.get("code", ""), None)  # spent even when the exchange fails
        if code is None or code.expires_at <= self.clock.now():
            raise OAuthError(400, "invalid_grant", _GRANT_ERROR)
        if code.app_id != app.app_id:
            raise OAuthError(400, "invalid_grant", "The client_id does not match the original.")
        if form.get("redirect_uri") != code.redirect_uri:
            raise OAuthError(400, "invalid_grant", "The redirect_uri does not match the original.")
        if code.challenge is not None:
            verifier = form.get("code_verifier")
            if not verifier:
                raise OAuthError(400, "invalid_grant", "code_verifier is required")
            derived = s256(verifier) if code.method == "S256" else verifier
            if not hmac.compare_digest(derived, code.challenge):
                raise OAuthError(
                    400, "invalid_grant", "code_verifier does not match the code_challenge"
                )
        return self.issue(app.app_id, code.user_id)

    def _refresh_grant(self, app: AppConfig, form: dict[str, str]) -> dict[str, Any]:
        grant = self.refresh_index.get(form.get("refresh_token", ""))
        if grant is None or grant.revoked or grant.refresh_expires_at <= self.clock.now():
            raise OAuthError(400, "invalid_grant", _GRANT_ERROR)
        if grant.app_id != app.app_id:
            raise OAuthError(400, "invalid_grant", "The client_id does not match the original.")
        # Rotation: the spent refresh token leaves the index, only the new one can be used.
        self.refresh_index.pop(grant.refresh_token, None)
        grant.refresh_token = self._tg(grant.user_id)
        grant.refresh_expires_at = self.clock.now() + self.api.refresh_token_ttl_s
        self.refresh_index[grant.refresh_token] = grant
        return self._pair(grant, None)


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="pt-BR"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)} - Mercado Livre (sandbox)</title></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
