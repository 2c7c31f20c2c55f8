"""What every auth use case shares: the dependencies, per-seller locks and the outbox.

The use cases themselves are split by reason to change: ``login`` (PKCE login and the
seller record it writes), ``sessions`` (dashboard, logout, disconnect) and ``broker``
(the internal token API and its serialised refresh).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Final

from peepers_auth import metrics
from peepers_auth.models import SellerRecord
from peepers_auth.ports import LoginStates, MlOAuth, SellerStore, Sessions
from peepers_auth.settings import Settings
from peepers_common.errors import PublishError
from peepers_common.events import event_headers, seller_event_key
from peepers_common.kafka import EventPublisher

log = logging.getLogger(__name__)

# A transition whose event Kafka did not take is retried by the next reader after this
# long, which keeps the writer's own publish the only one in the normal case.
OUTBOX_RETRY_AFTER_S: Final = 30.0
# How many times a login or disconnect retries its compare-and-set against concurrent writers.
WRITE_ATTEMPTS: Final = 5


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
