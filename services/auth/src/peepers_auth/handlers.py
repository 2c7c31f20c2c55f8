"""Use cases of the auth service: plain async functions over the ports in ``ports.py``.

Views parse requests and shape responses; everything that decides lives here.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlencode

from pydantic import SecretStr

from peepers_auth import metrics
from peepers_auth.errors import (
    CsrfRejected,
    LoginBrowserMismatch,
    LoginStateReused,
    LoginStateUnknown,
    MlAuthorizationDenied,
    MlCodeRejected,
    ReauthNeeded,
    RefreshTimeout,
    SellerNotConnected,
    SessionRequired,
    SiteUnknown,
)
from peepers_auth.models import LoginState, SealedTokens, SellerRecord, Session
from peepers_auth.pkce import Pkce, random_urlsafe
from peepers_auth.ports import LoginStates, MlOAuth, SellerStore, Sessions
from peepers_auth.settings import Settings
from peepers_common.errors import PublishError, ReauthRequired
from peepers_common.events import (
    SellerConnected,
    SellerDisconnected,
    SellerEvent,
    SellerReauthRequired,
    SellerReconnected,
    event_headers,
    occurred,
    seller_event_id,
    seller_event_key,
)
from peepers_common.kafka import EventPublisher
from peepers_common.ml import TokenSet
from peepers_common.ml.models import MlUser

log = logging.getLogger(__name__)

# A transition whose event Kafka did not take is retried by the next reader after this
# long, which keeps the writer's own publish the only one in the normal case.
OUTBOX_RETRY_AFTER_S: Final = 30.0
# How many times a login retries its compare-and-set against concurrent writers.
_LOGIN_WRITE_ATTEMPTS: Final = 5


class KeyedLocks:
    """One asyncio.Lock per key, dropped when nobody holds or waits for it.

    Collapses a replica's concurrent callers for one seller into one Redis round trip:
    the rest queue here and find the fresh token when their turn comes.
    """

    def __init__(self) -> None:
        self._locks: dict[int, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: int) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


@dataclass
class AuthDeps:
    """Everything the handlers use; the app factory builds it (tests inject fakes)."""

    settings: Settings
    ml: MlOAuth
    states: LoginStates
    sessions: Sessions
    sellers: SellerStore
    publisher: EventPublisher
    topic: str
    clock: Callable[[], float] = time.time
    locks: KeyedLocks = field(default_factory=KeyedLocks)


# --------------------------------------------------------------------------- login


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
    for _ in range(_LOGIN_WRITE_ATTEMPTS):
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


async def flush_outbox(deps: AuthDeps, record: SellerRecord) -> None:
    """Publish the record's pending events, then clear them (at-least-once, stable ids)."""
    if not record.outbox:
        return
    try:
        for event in record.outbox:
            headers = event_headers(event, source="peepers-auth")
            await deps.publisher.publish(
                deps.topic,
                key=seller_event_key(event),
                value=event.model_dump_json().encode(),
                headers=headers,
            )
            metrics.SELLER_EVENTS.labels(event.type).inc()
    except PublishError:
        # The record keeps the events; a later reader retries them (same event ids).
        log.warning("seller %s: events not published yet, kept for retry", record.seller_id)
        return
    await deps.sellers.clear_outbox(record.seller_id, version=record.version)


# --------------------------------------------------------------------------- sessions


@dataclass(frozen=True)
class Dashboard:
    session: Session
    seller: SellerRecord | None


async def dashboard(deps: AuthDeps, session_id: str | None) -> Dashboard:
    _, session = await _session(deps, session_id)
    return Dashboard(session, await deps.sellers.get(session.seller_id))


async def _session(deps: AuthDeps, session_id: str | None) -> tuple[str, Session]:
    session = await deps.sessions.get(session_id) if session_id else None
    if session_id is None or session is None:
        msg = "log in with Mercado Livre to see this page"
        raise SessionRequired(msg)
    return session_id, session


def _check_csrf(session: Session, csrf_token: str | None) -> None:
    expected = session.csrf_token.get_secret_value().encode()
    if csrf_token is None or not hmac.compare_digest(expected, csrf_token.encode()):
        msg = "the form's CSRF token does not match your session; reload the page"
        raise CsrfRejected(msg)


async def logout(deps: AuthDeps, session_id: str | None, csrf_token: str | None) -> None:
    session_id, session = await _session(deps, session_id)
    _check_csrf(session, csrf_token)
    await deps.sessions.delete(session_id)


async def disconnect(deps: AuthDeps, session_id: str | None, csrf_token: str | None) -> None:
    """Forget the seller's tokens (and end this session); publishes seller.disconnected."""
    session_id, session = await _session(deps, session_id)
    _check_csrf(session, csrf_token)
    seller_id = session.seller_id
    for _ in range(_LOGIN_WRITE_ATTEMPTS):
        current = await deps.sellers.get(seller_id)
        if current is None or current.status == "disconnected":
            break
        now = deps.clock()
        version = current.version + 1
        event = SellerDisconnected(
            event_id=seller_event_id(seller_id, "seller.disconnected", version),
            occurred_at=occurred(now),
            seller_id=seller_id,
        )
        record = current.model_copy(
            update={
                "version": version,
                "status": "disconnected",
                "tokens": None,
                "expires_at": 0.0,
                "updated_at": now,
                "outbox": (*current.outbox, event),
            }
        )
        if await deps.sellers.put(record, expected_version=current.version):
            await flush_outbox(deps, record)
            log.info("seller %s disconnected", seller_id)
            break
    await deps.sessions.delete(session_id)


# --------------------------------------------------------------------------- token broker


@dataclass(frozen=True)
class TokenGrant:
    seller_id: int
    access_token: SecretStr
    expires_at: float


async def access_token(deps: AuthDeps, seller_id: int) -> TokenGrant:
    """A token valid for at least the refresh margin, refreshing it first when needed."""
    margin = deps.settings.refresh_margin_s

    def fresh(record: SellerRecord) -> bool:
        return record.expires_at - deps.clock() > margin

    return await _ensure(deps, seller_id, fresh)


async def force_refresh(deps: AuthDeps, seller_id: int, stale_token: str | None) -> TokenGrant:
    """Refresh after ML answered 401 to ``stale_token``, unless someone already did."""
    seen_version: int | None = None

    def replaced(record: SellerRecord) -> bool:
        nonlocal seen_version
        if record.tokens is None or record.expires_at <= deps.clock():
            return False
        if stale_token is not None:
            current = record.tokens.access_token.get_secret_value().encode()
            return not hmac.compare_digest(current, stale_token.encode())
        # Without the stale token, only a refresh that happened after this call started
        # counts as "already done".
        if seen_version is None:
            seen_version = record.version
            return False
        return record.version > seen_version

    return await _ensure(deps, seller_id, replaced)


def _tokens(record: SellerRecord) -> SealedTokens:
    if record.tokens is None:
        msg = f"seller {record.seller_id} has no tokens stored"
        raise SellerNotConnected(msg)
    return record.tokens


def _usable(record: SellerRecord | None, seller_id: int) -> SellerRecord:
    if record is not None and record.status == "reauth_required":
        msg = f"seller {seller_id} must log in again: ML refused the refresh token"
        raise ReauthNeeded(msg)
    if record is None or record.status != "connected" or record.tokens is None:
        msg = f"seller {seller_id} has not connected a Mercado Livre account"
        raise SellerNotConnected(msg)
    return record


def _grant(record: SellerRecord) -> TokenGrant:
    tokens = _tokens(record)
    return TokenGrant(record.seller_id, tokens.access_token, record.expires_at)


async def _ensure(
    deps: AuthDeps, seller_id: int, satisfied: Callable[[SellerRecord], bool]
) -> TokenGrant:
    settings = deps.settings
    deadline = time.monotonic() + settings.refresh_wait_s
    async with deps.locks.hold(seller_id):
        while True:
            record = await deps.sellers.get(seller_id)
            if record is not None and record.outbox:
                await _retry_stale_outbox(deps, record)
            record = _usable(record, seller_id)
            if satisfied(record):
                return _grant(record)
            lock = await deps.sellers.acquire_lock(seller_id, ttl_s=settings.refresh_lock_ttl_s)
            if lock is not None:
                try:
                    # Re-read under the lock: the previous holder may have just finished.
                    record = _usable(await deps.sellers.get(seller_id), seller_id)
                    if satisfied(record):
                        return _grant(record)
                    refreshed = await _refresh_locked(deps, record, lock)
                finally:
                    await deps.sellers.release_lock(seller_id, lock)
                if refreshed is not None:
                    return _grant(refreshed)
                continue  # a newer login replaced the record: evaluate it afresh
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                metrics.REFRESHES.labels("wait_timeout").inc()
                msg = f"seller {seller_id}'s token refresh did not finish in time; retry"
                raise RefreshTimeout(msg)
            metrics.REFRESH_WAITS.inc()
            await deps.sellers.wait_for_change(
                seller_id, version=record.version, timeout_s=remaining
            )


async def _retry_stale_outbox(deps: AuthDeps, record: SellerRecord) -> None:
    if deps.clock() - record.updated_at >= OUTBOX_RETRY_AFTER_S:
        await flush_outbox(deps, record)


async def _refresh_locked(deps: AuthDeps, record: SellerRecord, lock: str) -> SellerRecord | None:
    """Spend the refresh token (we hold the lock); None when a newer write won the race."""
    stored = _tokens(record)
    seller_id = record.seller_id
    started = time.perf_counter()
    try:
        tokens = await deps.ml.refresh(stored.refresh_token.get_secret_value(), seller_id=seller_id)
        new_refresh = tokens.refresh_token
        if new_refresh is None:
            # The old refresh token is spent and no new one came: nothing can refresh
            # this seller any more, exactly as if ML had refused the grant.
            msg = "ML's refresh answer carried no refresh token"
            raise ReauthRequired(msg, seller_id=seller_id)
    except ReauthRequired:
        metrics.REFRESHES.labels("invalid_grant").inc()
        if not await _mark_reauth_required(deps, record, lock):
            return None
        msg = f"seller {seller_id} must log in again: ML refused the refresh token"
        raise ReauthNeeded(msg) from None
    finally:
        metrics.REFRESH_LATENCY.observe(time.perf_counter() - started)
    now = deps.clock()
    refreshed = record.model_copy(
        update={
            "version": record.version + 1,
            "tokens": SealedTokens(
                seller_id=seller_id,
                access_token=tokens.access_token,
                refresh_token=new_refresh,
            ),
            "expires_at": now + tokens.expires_in,
            "scope": tokens.scope or record.scope,
            "updated_at": now,
            "refreshes": record.refreshes + 1,
        }
    )
    # Fenced on the version only, not the lock: ML has already retired the old refresh
    # token, so these tokens are the only working ones unless a newer login replaced them.
    if await deps.sellers.put(refreshed, expected_version=record.version):
        metrics.REFRESHES.labels("refreshed").inc()
        log.info("seller %s: access token refreshed", seller_id)
        return refreshed
    metrics.REFRESHES.labels("superseded").inc()
    log.warning("seller %s: refreshed tokens superseded by a newer write", seller_id)
    return None


async def _mark_reauth_required(deps: AuthDeps, record: SellerRecord, lock: str) -> bool:
    now = deps.clock()
    version = record.version + 1
    event = SellerReauthRequired(
        event_id=seller_event_id(record.seller_id, "seller.reauth_required", version),
        occurred_at=occurred(now),
        seller_id=record.seller_id,
        reason="invalid_grant",
    )
    marked = record.model_copy(
        update={
            "version": version,
            "status": "reauth_required",
            "tokens": None,
            "expires_at": 0.0,
            "updated_at": now,
            "outbox": (*record.outbox, event),
        }
    )
    # Fenced on the version and the lock: only a holder whose read is still current may
    # declare the seller dead, so a slow holder can never undo a newer refresh or login.
    if not await deps.sellers.put(marked, expected_version=record.version, lock_token=lock):
        return False
    log.warning("seller %s: ML refused the refresh token; re-login needed", record.seller_id)
    await flush_outbox(deps, marked)
    return True
