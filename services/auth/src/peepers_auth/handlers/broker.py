"""The token broker: a valid access token per seller, refreshed once however many ask."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import SecretStr

from peepers_auth import metrics
from peepers_auth.errors import ReauthNeeded, RefreshTimeout, SellerNotConnected
from peepers_auth.handlers.deps import OUTBOX_RETRY_AFTER_S, AuthDeps, flush_outbox
from peepers_auth.models import SealedTokens, SellerRecord
from peepers_common.errors import ReauthRequired
from peepers_common.events import SellerReauthRequired, occurred, seller_event_id

log = logging.getLogger(__name__)


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
        if await _replaced_already(deps, record):
            return None
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
    # Durable even when the write does not land (the view lost or unreachable): the next
    # read restores them, or `_replaced_already` finds them when ML refuses the old ones.
    if await deps.sellers.put(refreshed, expected_version=record.version, durable=True):
        metrics.REFRESHES.labels("refreshed").inc()
        log.info("seller %s: access token refreshed", seller_id)
        return refreshed
    metrics.REFRESHES.labels("superseded").inc()
    log.warning("seller %s: refreshed tokens superseded by a newer write", seller_id)
    return None


async def _replaced_already(deps: AuthDeps, record: SellerRecord) -> bool:
    """Whether a newer state of the seller is durable though ``record`` was read.

    ML refused ``record``'s refresh token. When an earlier refresh spent it, its tokens
    are durable but may have missed the view (Redis flushed, restarted or silent when
    they were written, or auth killed between the changelog and the view): caught up,
    the view holds them and the caller evaluates it afresh instead of declaring the
    seller lost.
    """
    current = await deps.sellers.catch_up(record.seller_id)
    if current is None or current.version <= record.version:
        return False
    metrics.REFRESHES.labels("recovered").inc()
    log.warning(
        "seller %s: ML refused a spent refresh token; its successor was durable, recovered",
        record.seller_id,
    )
    return True


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
