"""A seller's browser session: the dashboard, logging out and disconnecting."""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass

from peepers_auth.errors import CsrfRejected, SessionRequired
from peepers_auth.handlers.deps import WRITE_ATTEMPTS, AuthDeps, flush_outbox
from peepers_auth.models import SellerRecord, Session
from peepers_common.events import SellerDisconnected, occurred, seller_event_id

log = logging.getLogger(__name__)


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
    for _ in range(WRITE_ATTEMPTS):
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
