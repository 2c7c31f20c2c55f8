"""Live updates: domain events fanned out to the open pages of their own seller.

Every replica reads every partition of the public topics (a broadcast, not a consumer
group's share: a page may be open on any replica) and keeps the last events of each
seller. A page's stream sends each event with an id (``<topic>/<partition>/<offset>``,
the same on every replica); a page that reconnects with ``Last-Event-ID`` gets what came
after that id, or, when the id is no longer kept (a replica that started after it, or a
long absence), one ``reload`` event: the page reloads its parts, which shows at least
what the missed events would have. Duplicates (an event sent before and after a
reconnect) are harmless: the page refetches the parts an event names.

The events are read generically (``type``, ``seller_id``, ``event_id``), so new event
types of a v1 topic need no change here.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from peepers_auth.web.ports import SellerStatus

# The parts of the pages an event type changes (its prefix before the first dot).
_PARTS: Final = {
    "order": "orders",
    "question": "questions",
    "answer": "questions",
    # A message changes its conversation and its order's timeline (both pages listen).
    "message": "conversations",
    "claim": "tickets",
    "ticket": "tickets",
    "item": "catalog",
    "seller": "status",
}
_STATUS_OF: Final = {
    "seller.connected": "connected",
    "seller.reconnected": "connected",
    "seller.disconnected": "disconnected",
    "seller.reauth_required": "reauth_required",
}
RELOAD: Final = "reload"
# Put in every open page's queue when the replica shuts down: the stream ends, and the
# browser reconnects (to a replica still up) with its Last-Event-ID.
CLOSING: Final = "closing"


@dataclass(frozen=True)
class LiveEvent:
    id: str
    seller_id: int
    type: str
    part: str
    # What the page needs to place it (ids, never the whole event).
    ref: str | None = None

    def data(self) -> str:
        return json.dumps({"type": self.type, "part": self.part, "ref": self.ref})


def parse_event(topic: str, partition: int, offset: int, raw: bytes | None) -> LiveEvent | None:
    """The live event of a record, or None for a record that is not a readable event."""
    try:
        body = json.loads(raw or b"")
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    seller, kind = body.get("seller_id"), body.get("type")
    if not isinstance(seller, int) or not isinstance(kind, str):
        return None
    part = _PARTS.get(kind.partition(".")[0])
    if part is None:
        return None
    ref = next(
        (
            str(body[name])
            for name in ("order_id", "question_id", "item_id", "ticket_id", "claim_id", "pack_id")
            if name in body
        ),
        None,
    )
    return LiveEvent(f"{topic}/{partition}/{offset}", seller, kind, part, ref)


def seller_status(raw: bytes | None) -> tuple[int, SellerStatus] | None:
    """A ``peepers.sellers.v1`` record as the seller's connection status."""
    try:
        body = json.loads(raw or b"")
        status = _STATUS_OF[body["type"]]
        seller = int(body["seller_id"])
        since = datetime.fromisoformat(body["occurred_at"])
    except (ValueError, KeyError, TypeError):
        return None
    return seller, SellerStatus(status, body.get("nickname"), body.get("site_id"), since)


@dataclass
class _Seller:
    # (when it arrived, monotonic; the event)
    recent: deque[tuple[float, LiveEvent]]
    pages: set[asyncio.Queue[LiveEvent]] = field(default_factory=set)


class LiveHub:
    """Per seller: its last events and the queues of its pages open now.

    An event is kept for ``keep_s`` (the replay window a starting replica reads, so every
    replica can resume the same ids) and at most the last ``keep`` per seller; a seller
    with no recent event and no open page is forgotten, so memory follows the traffic
    of the last minutes, not the number of sellers ever seen.
    """

    def __init__(
        self,
        keep: int,
        keep_s: float,
        *,
        page_queue: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keep = keep
        self._keep_s = keep_s
        self._page_queue = page_queue
        self._clock = clock
        self._sellers: dict[int, _Seller] = {}
        self._swept_at = clock()
        self.statuses: dict[int, SellerStatus] = {}

    def _seller(self, seller_id: int) -> _Seller:
        seller = self._sellers.get(seller_id)
        if seller is None:
            seller = self._sellers[seller_id] = _Seller(deque(maxlen=self._keep))
        return seller

    def _prune(self, seller: _Seller, now: float) -> None:
        while seller.recent and seller.recent[0][0] < now - self._keep_s:
            seller.recent.popleft()

    def publish(self, event: LiveEvent) -> None:
        now = self._clock()
        seller = self._seller(event.seller_id)
        self._prune(seller, now)
        seller.recent.append((now, event))
        for queue in list(seller.pages):
            if queue.full():
                # A page this far behind reloads rather than holding memory for it.
                seller.pages.discard(queue)
                queue.get_nowait()
                queue.put_nowait(LiveEvent(RELOAD, event.seller_id, RELOAD, RELOAD))
            else:
                queue.put_nowait(event)
        if now - self._swept_at > self._keep_s / 10:
            self.sweep()

    def sweep(self) -> None:
        """Drop expired events, and the sellers left with none and no open page."""
        now = self._swept_at = self._clock()
        for seller_id, seller in list(self._sellers.items()):
            self._prune(seller, now)
            if not seller.recent and not seller.pages:
                del self._sellers[seller_id]

    def missed(self, seller_id: int, last_event_id: str | None) -> list[LiveEvent]:
        """What a page that last saw ``last_event_id`` has not seen (a reload if unknown)."""
        if last_event_id is None:
            return []
        seller = self._seller(seller_id)
        self._prune(seller, self._clock())
        recent = [event for _, event in seller.recent]
        for index, event in enumerate(recent):
            if event.id == last_event_id:
                return recent[index + 1 :]
        return [LiveEvent(RELOAD, seller_id, RELOAD, RELOAD)]

    @asynccontextmanager
    async def follow(
        self, seller_id: int, last_event_id: str | None
    ) -> AsyncIterator[tuple[list[LiveEvent], asyncio.Queue[LiveEvent]]]:
        """The events a page missed, and a queue of the ones to come, while it is open."""
        queue: asyncio.Queue[LiveEvent] = asyncio.Queue(self._page_queue)
        seller = self._seller(seller_id)
        seller.pages.add(queue)
        try:
            yield self.missed(seller_id, last_event_id), queue
        finally:
            seller.pages.discard(queue)

    def close(self) -> None:
        """End every open page's stream (shutdown)."""
        for seller_id, seller in self._sellers.items():
            for queue in seller.pages:
                if queue.full():
                    queue.get_nowait()
                queue.put_nowait(LiveEvent(CLOSING, seller_id, CLOSING, CLOSING))

    def open_pages(self) -> int:
        return sum(len(s.pages) for s in self._sellers.values())

    def sellers_kept(self) -> int:
        return len(self._sellers)
