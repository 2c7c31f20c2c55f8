"""Logging a seller in: PKCE start, ML's callback, and the seller record it writes."""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from urllib.parse import urlencode

from pydantic import SecretStr

from peepers_auth import metrics
from peepers_auth.errors import (
    LoginBrowserMismatch,
    LoginStateReused,
    LoginStateUnknown,
    MlAuthorizationDenied,
    MlCodeRejected,
    RefreshTimeout,
    SiteUnknown,
)
from peepers_auth.handlers.deps import WRITE_ATTEMPTS, AuthDeps, flush_outbox
from peepers_auth.models import LoginState, SealedTokens, SellerRecord, Session
from peepers_auth.pkce import Pkce, random_urlsafe
from peepers_common.errors import ReauthRequired
from peepers_common.events import (
    SellerConnected,
    SellerEvent,
    SellerReconnected,
    occurred,
    seller_event_id,
)
from peepers_common.ml import TokenSet
from peepers_common.ml.models import MlUser

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoginStart:
    authorization_url: str
    browser_nonce: str


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


async def start_login(deps: AuthDeps, site: str | None) -> LoginStart:
    settings = deps.settings
    site_id = (site or settings.oauth.default_site).upper()
    base = settings.oauth.auth_base_urls.get(site_id)
    if base is None:
        msg = f"{site_id!r} is not a Mercado Livre site this service logs into"
        raise SiteUnknown(msg)
    pkce = Pkce.new()
    state = random_urlsafe(32)
    nonce = random_urlsafe(32)
    login = LoginState(
        verifier=SecretStr(pkce.verifier),
        site_id=site_id,
        browser_binding=_digest(nonce),
        created_at=deps.clock(),
    )
    await deps.states.put(state, login, ttl_s=settings.login_state_ttl_s)
    query = urlencode(
        {
            "response_type": "code",
            "client_id": str(settings.ml.app_id),
            "redirect_uri": settings.oauth.redirect_uri,
            "state": state,
            "code_challenge": pkce.challenge,
            "code_challenge_method": pkce.method,
        }
    )
    metrics.LOGINS.labels("started").inc()
    return LoginStart(f"{base}/authorization?{query}", nonce)


@dataclass(frozen=True)
class LoginDone:
    session_id: str
    seller: SellerRecord


async def complete_login(
    deps: AuthDeps,
    *,
    state: str | None,
    code: str | None,
    error: str | None,
    error_description: str | None,
    browser_nonce: str | None,
) -> LoginDone:
    """Finish a login from ML's redirect; every refusal raises a ``LoginRefused``."""
    # The state is consumed before anything else, error redirects included, so it can
    # never be presented twice.
    login = await deps.states.take(state) if state else None
    if login is None:
        metrics.LOGINS.labels("state_refused").inc()
        if state and await deps.states.was_used(state):
            msg = "ML redirected here with a state that was already used; start the login again"
            raise LoginStateReused(msg)
        msg = "the login state is missing, unknown or expired; start the login again"
        raise LoginStateUnknown(msg)
    if browser_nonce is None or not hmac.compare_digest(
        _digest(browser_nonce), login.browser_binding
    ):
        metrics.LOGINS.labels("browser_mismatch").inc()
        msg = "the login cookie of this browser does not match the login it completes"
        raise LoginBrowserMismatch(msg)
    if error is not None:
        metrics.LOGINS.labels("ml_error").inc()
        raise MlAuthorizationDenied(error, error_description)
    if not code:
        metrics.LOGINS.labels("ml_error").inc()
        msg = "ML redirected back without an authorization code"
        raise MlCodeRejected(msg)
    try:
        tokens = await deps.ml.exchange_code(
            code=code,
            verifier=login.verifier.get_secret_value(),
            redirect_uri=deps.settings.oauth.redirect_uri,
        )
    except ReauthRequired:
        metrics.LOGINS.labels("code_rejected").inc()
        msg = "ML refused the authorization code (expired, already used or not ours)"
        raise MlCodeRejected(msg) from None
    if tokens.refresh_token is None:
        metrics.LOGINS.labels("code_rejected").inc()
        msg = "ML granted no refresh token: the application needs the offline_access scope"
        raise MlCodeRejected(msg)
    user = await deps.ml.me(tokens.access_token.get_secret_value())
    if user.id != tokens.user_id:
        metrics.LOGINS.labels("code_rejected").inc()
        msg = "ML's /users/me answered for another user than the token's"
        raise MlCodeRejected(msg)
    record = await _store_login(deps, user, tokens, tokens.refresh_token)
    session = Session(
        seller_id=user.id, csrf_token=SecretStr(random_urlsafe(32)), created_at=deps.clock()
    )
    session_id = await deps.sessions.create(session, ttl_s=deps.settings.session_ttl_s)
    metrics.LOGINS.labels("completed").inc()
    log.info("seller %s (%s) connected", user.id, record.site_id)
    return LoginDone(session_id, record)


async def _store_login(
    deps: AuthDeps, user: MlUser, tokens: TokenSet, refresh_token: SecretStr
) -> SellerRecord:
    site_id = user.site_id or "unknown"
    for _ in range(WRITE_ATTEMPTS):
        now = deps.clock()
        current = await deps.sellers.get(user.id)
        expected = current.version if current else 0
        version = expected + 1
        event: SellerEvent
        if current is None:
            event = SellerConnected(
                event_id=seller_event_id(user.id, "seller.connected", version),
                occurred_at=occurred(now),
                seller_id=user.id,
                nickname=user.nickname,
                site_id=site_id,
            )
        else:
            event = SellerReconnected(
                event_id=seller_event_id(user.id, "seller.reconnected", version),
                occurred_at=occurred(now),
                seller_id=user.id,
                nickname=user.nickname,
                site_id=site_id,
            )
        record = SellerRecord(
            seller_id=user.id,
            version=version,
            status="connected",
            nickname=user.nickname,
            site_id=site_id,
            scope=tokens.scope,
            tokens=SealedTokens(
                seller_id=user.id,
                access_token=tokens.access_token,
                refresh_token=refresh_token,
            ),
            expires_at=now + tokens.expires_in,
            connected_at=now,
            updated_at=now,
            outbox=(*(current.outbox if current else ()), event),
        )
        if await deps.sellers.put(record, expected_version=expected):
            await flush_outbox(deps, record)
            return record
    msg = f"seller {user.id}'s record kept changing while the login was stored"
    raise RefreshTimeout(msg)
