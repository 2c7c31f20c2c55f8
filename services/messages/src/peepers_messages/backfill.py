"""Backfill on ``seller.connected``: unanswered questions, open claims, conversations.

Claims (``BackfillOptions.claims``): a first connection mirrors the open ones, what the
seller must act on (years of closed claims would each open a closed ticket). A
``seller.reconnected`` (every login of a known seller) does the same, then re-reads the
claims the mirror still holds as open, to catch those closed while the seller was away:
one ``get_claim`` each, nothing for the closed history. A rebuild of a lost mirror also
searches claims of every status (the mirror held the closed ones too), after the open
ones: ML's claim search has no sort but oldest first, so a cap on it cuts the newest
claims, the open ones, and the open search goes first so that no cap drops them.

ML's question search stops at 1,000 results (``offset + limit``; FACTS.md 5.1): a seller
with more unanswered questions is searched item by item (the items from the scan search,
each item's questions a search of its own). Claims are paged while ``offset + limit``
stays under ML's 10,000 (FACTS.md 5.3). ML lists no seller's conversations, so they are
found through the seller's orders (all of them, or those of the last
``conversation_days``; every status: ML's search hides cancelled ones unless asked), one
pack page each, in two passes, because a seller's order search sorts by ``date_closed``
and an order confirmed mid-pass moves (FACTS.md 4.3; `_Run._orders_conversations`).
Every question, claim and conversation goes through the same apply path as a
notification, so a backfill racing the webhooks changes nothing twice.

Its ML requests wait in the outbound limiter's bulk lane, behind webhook-driven ones. The
backfill is resumable: its checkpoint (``backfill:{seller}``: phase, offset, items
done, counts) is saved after every page, and a run with the same ``run_id`` continues
from it. It is a mirror's checkpoint: lost with the mirror, which a new backfill rebuilds.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Final, Literal, TypeVar

import redis.asyncio as aioredis

from peepers_common.errors import MlNotFound
from peepers_common.ml.models import ORDER_STATUSES, MlClaim, MlOrder, MlQuestion
from peepers_common.ml.ratelimit import bulk_lane
from peepers_common.namespaces import Namespace, redis_errors
from peepers_messages import metrics
from peepers_messages.adapters.redis_views import ConversationRecord
from peepers_messages.domain import UNANSWERED, claim_snapshot
from peepers_messages.handlers import (
    Messages,
    Outcome,
    apply_claim,
    apply_questions,
    index_conversation,
    sync_conversation,
)

log = logging.getLogger(__name__)

_Read = TypeVar("_Read")  # an entry of a search (a question, a claim)

QUESTION_SEARCH_CAP: Final = 1000
CLAIM_SEARCH_CAP: Final = 10_000
CLAIM_PAGE: Final = 100  # ML's largest (FACTS.md 5.3)
# Questions written in one transaction (and read in one pipeline).
APPLY_BATCH: Final = 200
# How far ML's clock may be behind ours: the catch-up pass over the orders closed since
# the conversations pass began starts this much earlier, and on the hour before (ML's
# date filters use "up to the hour", FACTS.md 4.3).
MOVED_MARGIN: Final = timedelta(minutes=10)
Phase = Literal[
    "questions",
    "item_questions",
    "claims",  # the open claims' search
    "recheck_claims",  # the claims the mirror holds as open, re-read (a reconnection)
    "every_claim",  # the search of every status (a rebuild)
    "conversations",
    "moved_conversations",  # the orders closed since the conversations pass began
    "done",
]
# Which claims a backfill reads (the module's docstring).
ClaimScope = Literal["open", "reconnected", "every"]
_AFTER_OPEN_CLAIMS: Final[dict[ClaimScope, Phase]] = {
    "open": "conversations",
    "reconnected": "recheck_claims",
    "every": "every_claim",
}


@dataclass
class BackfillState:
    seller_id: int
    run_id: str
    phase: Phase = "questions"
    offset: int = 0
    items_done: int = 0
    total_questions: int = 0
    # The id of the last question or claim read in this phase: its next page starts
    # there (`_page_after_last`); None before a phase's first page, and in older
    # checkpoints.
    last_read: int | None = None
    total_claims: int = 0
    total_orders: int = 0
    # The conversations phase's window start (ISO), fixed when it starts so a resumed run
    # pages the same search.
    orders_since: str | None = None
    # Where the conversations phase finds the packs ("orders" or "index"), fixed when it
    # starts: its offset counts orders or indexed packs.
    conversations_from: str | None = None
    # Whether this code read the orders from the first one: a run resumed from a checkpoint
    # of before the index read the orders before its offset without indexing them, so it
    # must not mark the seller scanned (a rebuild from the index would miss them).
    orders_from_start: bool = False
    # Where the catch-up pass starts (ISO): the orders closed from then on are read
    # again. Fixed when the pass over the orders starts; None in a checkpoint saved by
    # the oldest-first code of before, whose offset the newest-first pass cannot use.
    moved_since: str | None = None
    total_packs: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def conversations_total(self) -> int:
        """What the conversations phase's offset runs up to: indexed packs, or orders."""
        return self.total_packs if self.conversations_from == "index" else self.total_orders


@dataclass(frozen=True)
class BackfillOptions:
    run_id: str
    page_size: int = 50
    item_concurrency: int = 8
    conversation_days: int | None = None
    restart: bool = False
    claims: ClaimScope = "open"
    # Conversations from the index for a seller scanned whole once (a rebuild).
    from_index: bool = False


@dataclass
class _Cursor:
    """How far a search was read: the offset after its last page, and that page's last id."""

    offset: int = 0
    last: int | None = None


async def _page_after_last(
    search: Callable[[int, int], Awaitable[tuple[Sequence[_Read], int]]],
    ident: Callable[[_Read], int],
    at: _Cursor,
    *,
    size: int,
    cap: int,
) -> tuple[Sequence[_Read], int, int]:
    """The next page of a search whose entries may leave it: (unread, page size, total).

    A question answered (or a claim closed) meanwhile leaves its search, and the entries
    after it move one place back: paged by offset alone, the entry that moved across the
    page boundary was never read, and nothing would bring it later (as the orders' pass,
    `_Run._orders_conversations`). ML's searches here have no date filter to page by, so
    a page starts at the last entry read (one place before the offset) and what follows
    it is unread. Where that entry is not in the page (gone, or moved further back; the
    page may come back empty), it steps back, twice as far each time, until it finds it
    or reaches the first entry: a checkpoint without a last entry (of older code) starts
    over from there.

    ``search(offset, limit)`` gives a page and the search's total; no page asks past
    ``cap`` (``offset + limit``, ML's search limit). ``at`` moves to the page's start and
    last entry; add the returned page size to its offset once the page is applied. The
    size is 0 when the search holds nothing after the last entry read (a short page with
    nothing unread), whatever its total says: the caller's pages end there.
    """
    back = 1 if at.offset > 0 else 0
    while True:
        start = max(0, at.offset - back)
        limit = min(size, cap - start)
        page, total = await search(start, limit)
        ids = [ident(entry) for entry in page]
        if start == 0 or (at.last is not None and at.last in ids):
            break
        back *= 2
    after = ids.index(at.last) + 1 if at.last in ids else 0
    unread = page[after:]
    if ids:
        at.last = ids[-1]
    at.offset = start
    done = not unread and len(ids) < limit
    return unread, 0 if done else len(ids), total


class RedisBackfillCheckpoints:
    def __init__(self, redis: aioredis.Redis, namespace: Namespace) -> None:
        self._redis = redis
        self._ns = namespace

    async def load(self, seller_id: int) -> BackfillState | None:
        with redis_errors("reading a backfill checkpoint"):
            raw = await self._redis.get(self._ns.key("backfill", seller_id))
        return None if raw is None else BackfillState(**json.loads(raw))

    async def save(self, state: BackfillState) -> None:
        with redis_errors("saving a backfill checkpoint"):
            await self._redis.set(
                self._ns.key("backfill", state.seller_id), json.dumps(asdict(state))
            )


Progress = Callable[[BackfillState], None]


async def backfill(
    seller_id: int,
    deps: Messages,
    checkpoints: RedisBackfillCheckpoints,
    options: BackfillOptions,
    progress: Progress = lambda _state: None,
) -> BackfillState:
    """Mirror the seller's unanswered questions, claims and conversations (resumable)."""
    state = await checkpoints.load(seller_id)
    if state is None or options.restart or state.run_id != options.run_id:
        state = BackfillState(seller_id=seller_id, run_id=options.run_id)
    if state.phase == "done":
        return state
    label = str(seller_id)
    metrics.BACKFILL_RUNNING.labels(label).set(1)
    # Behind webhook-driven requests for the ML budget (the limiter's bulk lane).
    try:
        with bulk_lane():
            await _Run(state, deps, checkpoints, options, progress).phases()
    finally:
        metrics.BACKFILL_RUNNING.labels(label).set(0)
    log.info("backfill of seller %d done: %s", seller_id, state.counts)
    return state


@dataclass
class _Run:
    """One backfill run: its checkpoint, what it calls, and its phases in order."""

    state: BackfillState
    deps: Messages
    checkpoints: RedisBackfillCheckpoints
    options: BackfillOptions
    progress: Progress
    # The packs this process read in this run (a resumed run may read some again).
    packs_read: set[int] = field(default_factory=set)

    async def phases(self) -> None:
        state = self.state
        if state.phase == "questions":
            await self._questions()
        if state.phase == "item_questions":
            await self._item_questions()
        if state.phase == "claims":
            then = _AFTER_OPEN_CLAIMS[self.options.claims]
            await self._claims(status="opened", then=then)
        if state.phase == "recheck_claims":
            await self._recheck_claims()
        if state.phase == "every_claim":
            await self._claims(status=None, then="conversations")
        if state.phase in ("conversations", "moved_conversations"):
            await self._conversations()

    def _count(self, entity: str, outcome: Outcome) -> None:
        """One entity applied: its outcome in the checkpoint's counts (``questions_created``)."""
        counts = self.state.counts
        key = f"{entity}s_{outcome.value}"
        counts[key] = counts.get(key, 0) + 1
        metrics.BACKFILL.labels(str(self.state.seller_id), entity).inc()

    async def _save(self) -> None:
        await self.checkpoints.save(self.state)
        self.progress(self.state)

    async def _next_phase(self, then: Phase) -> None:
        self.state.phase, self.state.offset, self.state.last_read = then, 0, None
        await self._save()

    async def _paged(self, count: int, total: int, then: Phase) -> bool:
        """A page of ``count`` done: the offset moves on; the checkpoint is saved.

        An empty page, or one that reaches ``total``, ends the phase: the next is ``then``.
        Returns whether it ended.
        """
        self.state.offset += count
        if count == 0 or self.state.offset >= total:
            await self._next_phase(then)
            return True
        await self._save()
        return False

    async def _apply_questions(self, questions: Iterable[MlQuestion]) -> None:
        mine = [q for q in questions if q.seller_id == self.state.seller_id]
        for start in range(0, len(mine), APPLY_BATCH):
            for outcome in await apply_questions(mine[start : start + APPLY_BATCH], self.deps):
                self._count("question", outcome)

    async def _read_on(
        self,
        search: Callable[[int, int], Awaitable[tuple[Sequence[_Read], int]]],
        ident: Callable[[_Read], int],
        *,
        size: int,
        cap: int,
    ) -> tuple[Sequence[_Read], int, int]:
        """`_page_after_last` from the checkpoint's offset and last entry read."""
        at = _Cursor(self.state.offset, self.state.last_read)
        page = await _page_after_last(search, ident, at, size=size, cap=cap)
        self.state.offset, self.state.last_read = at.offset, at.last
        return page

    def _unanswered(
        self, item_id: str | None = None
    ) -> Callable[[int, int], Awaitable[tuple[Sequence[MlQuestion], int]]]:
        """The unanswered questions' search, the seller's or one item's, for the pager."""

        async def search(offset: int, limit: int) -> tuple[Sequence[MlQuestion], int]:
            page = await self.deps.ml.search_questions(
                seller_id=self.state.seller_id,
                item_id=item_id,
                status=UNANSWERED,
                offset=offset,
                limit=limit,
            )
            return page.questions, page.total

        return search

    async def _questions(self) -> None:
        state, size = self.state, self.options.page_size
        while True:
            unread, count, total = await self._read_on(
                self._unanswered(), lambda q: q.id, size=size, cap=QUESTION_SEARCH_CAP
            )
            state.total_questions = total
            if total > QUESTION_SEARCH_CAP:
                # More than ML's search shows: item by item instead (what was applied stays).
                await self._next_phase("item_questions")
                return
            await self._apply_questions(unread)
            if await self._paged(count, total, "claims"):
                return

    async def _item_questions(self) -> None:
        state, options = self.state, self.options
        gate = asyncio.Semaphore(options.item_concurrency)

        async def one(item_id: str) -> list[MlQuestion]:
            search = self._unanswered(item_id)
            found: list[MlQuestion] = []
            at = _Cursor()  # an item's questions: as the seller's (`_page_after_last`)
            async with gate:
                while at.offset + options.page_size <= QUESTION_SEARCH_CAP:
                    unread, count, total = await _page_after_last(
                        search, lambda q: q.id, at, size=options.page_size, cap=QUESTION_SEARCH_CAP
                    )
                    found += unread
                    at.offset += count
                    if not count or at.offset >= total:
                        break
            return found

        async def flush(batch: list[str]) -> None:
            pages = await asyncio.gather(*(one(item_id) for item_id in batch))
            await self._apply_questions(q for page in pages for q in page)
            state.items_done += len(batch)
            batch.clear()
            await self._save()

        batch: list[str] = []
        index = 0
        async for item_id in self.deps.ml.iter_item_ids(seller_id=state.seller_id):
            index += 1
            if index <= state.items_done:
                continue  # done before a crash
            batch.append(item_id)
            if len(batch) >= options.item_concurrency * 4:
                await flush(batch)
        if batch:
            await flush(batch)
        await self._next_phase("claims")

    async def _claims(self, *, status: str | None, then: Phase) -> None:
        """The claims of ``status`` (every one for None), paged oldest first as ML sorts them."""
        state = self.state
        # The search of every status follows the open claims' (a rebuild).
        apply = self._apply_claim if status is not None else self._unless_held

        async def search(offset: int, limit: int) -> tuple[Sequence[MlClaim], int]:
            page = await self.deps.ml.search_claims(
                seller_id=state.seller_id, status=status, offset=offset, limit=limit
            )
            return page.data, page.paging.total

        # An open claim closed meanwhile leaves the open search (`_page_after_last`).
        while state.offset + CLAIM_PAGE < CLAIM_SEARCH_CAP:
            unread, count, total = await self._read_on(
                search, lambda c: c.id, size=CLAIM_PAGE, cap=CLAIM_SEARCH_CAP
            )
            state.total_claims = total
            await asyncio.gather(*(apply(claim) for claim in unread))
            if await self._paged(count, total, then):
                return
        log.warning(
            "seller %d has more claims (status %s) than ML's search pages (%d): the newest"
            " come by webhook",
            state.seller_id,
            status or "any",
            CLAIM_SEARCH_CAP,
        )
        await self._next_phase(then)

    async def _unless_held(self, claim: MlClaim) -> None:
        """A claim applied unless the mirror holds it as new already (no second detail read)."""
        held = await self.deps.mirror.claim(claim.id)
        found = claim_snapshot(claim, None, self.state.seller_id)
        if held is None or held.last_updated < found.last_updated:
            await self._apply_claim(claim)

    async def _recheck_claims(self) -> None:
        """The claims the mirror holds as open, re-read: those closed meanwhile are applied.

        In claim id order; the offset is the last id re-read (a claim applied closed leaves
        the open ones, so an index into them would skip some after a resume). One
        ``get_claim`` each: the open ones were just applied from the search.
        """
        state = self.state
        held = sorted(
            c.id
            for c in await self.deps.mirror.claims(state.seller_id)
            if c.status == "opened" and c.id > state.offset
        )
        for start in range(0, len(held), CLAIM_PAGE):
            page = held[start : start + CLAIM_PAGE]
            await asyncio.gather(*(self._recheck_claim(claim_id) for claim_id in page))
            state.offset = page[-1]
            await self._save()
        await self._next_phase("conversations")

    async def _recheck_claim(self, claim_id: int) -> None:
        seller_id = self.state.seller_id
        try:
            claim = await self.deps.ml.get_claim(claim_id, seller_id=seller_id)
        except MlNotFound:
            log.warning("claim %d of seller %d is gone from ML: left as held", claim_id, seller_id)
            return
        if claim.status != "opened":
            await self._apply_claim(claim)

    async def _apply_claim(self, claim: MlClaim) -> None:
        seller_id = self.state.seller_id
        try:
            detail = await self.deps.ml.get_claim_detail(claim.id, seller_id=seller_id)
        except MlNotFound:
            detail = None
        outcome = await apply_claim(claim_snapshot(claim, detail, seller_id), self.deps)
        self._count("claim", outcome)

    async def _conversations(self) -> None:
        state = self.state
        if state.conversations_from is None:
            # A checkpoint of a run from before the index, midway, counts orders.
            indexed = self.options.from_index and state.offset == 0
            indexed = indexed and await self.deps.conversations.scanned(state.seller_id)
            state.conversations_from = "index" if indexed else "orders"
            state.orders_from_start = state.offset == 0
        gate = asyncio.Semaphore(self.options.item_concurrency)

        async def one(pack_id: int) -> None:
            async with gate:
                try:
                    outcome = await sync_conversation(pack_id, state.seller_id, self.deps)
                except MlNotFound:
                    return  # not a pack of this seller's any more
            self._count("conversation", outcome)

        if state.conversations_from == "index":
            await self._indexed_conversations(one)
            return
        if state.phase == "conversations":
            await self._orders_conversations(one)
        if state.phase == "moved_conversations":
            await self._moved_conversations(one)

    async def _indexed_conversations(self, one: Callable[[int], Awaitable[None]]) -> None:
        """The packs the conversations index holds: one pack page each, no empty pack read."""
        state = self.state
        packs = await self.deps.conversations.packs(state.seller_id)
        state.total_packs = len(packs)
        while True:
            page = packs[state.offset : state.offset + self.options.page_size]
            await asyncio.gather(*(one(pack_id) for pack_id in page))
            if await self._paged(len(page), len(packs), "done"):
                return

    def _orders_window(self) -> datetime | None:
        """The conversations phase's window start (fixed in the checkpoint when it starts)."""
        state, options = self.state, self.options
        if state.orders_since is None and options.conversation_days is not None:
            since_days = timedelta(days=options.conversation_days)
            state.orders_since = (self.deps.now() - since_days).isoformat()
        return None if state.orders_since is None else datetime.fromisoformat(state.orders_since)

    async def _orders_conversations(self, one: Callable[[int], Awaitable[None]]) -> None:
        """Every pack of the seller's orders (of the window): ML lists no conversations.

        A seller's search sorts by ``date_closed``, so an order confirmed while the pages
        are read moves to the newest end. Oldest first, every order after it shifts one
        place back, and the one across the page boundary is never read (`make check`
        found two packs lost so, session 10). Newest first, an order not confirmed
        meanwhile only ever moves further on (an order confirmed or created lands in
        front of it): it is read, perhaps twice. Only the orders confirmed or created
        meanwhile may be passed over: `_moved_conversations` reads the confirmed ones
        after this pass; one created meanwhile had no conversation when the backfill
        began, and its messages come by notification as every new one does.
        """
        state, deps = self.state, self.deps
        if state.moved_since is None:
            began = (deps.now() - MOVED_MARGIN).replace(minute=0, second=0, microsecond=0)
            state.moved_since = began.isoformat()
            state.offset = 0  # an oldest-first checkpoint's offset: start the pass over
        await self._orders_pass(one, sort="date_desc", closed_from=None, then="moved_conversations")

    async def _moved_conversations(self, one: Callable[[int], Awaitable[None]]) -> None:
        """The orders closed since the pass over the orders began, oldest first.

        Orders closed from then on are added at the newest end of this search, and none
        leaves it, so an offset read oldest first passes over none of them.
        """
        state = self.state
        moved_since = datetime.fromisoformat(state.moved_since or "")
        await self._orders_pass(one, sort="date_asc", closed_from=moved_since, then="done")
        if self._orders_window() is None and state.orders_from_start:
            # Every order's pack read: the index holds each conversation from now on.
            await index_conversation(ConversationRecord(seller_id=state.seller_id), self.deps)

    async def _orders_pass(
        self,
        one: Callable[[int], Awaitable[None]],
        *,
        sort: str,
        closed_from: datetime | None,
        then: Phase,
    ) -> None:
        """Page the seller's orders (of the window) from the checkpoint's offset to the end."""
        state = self.state
        since = self._orders_window()
        while True:
            page = await self.deps.ml.search_orders(
                seller_id=state.seller_id,
                offset=state.offset,
                limit=self.options.page_size,
                sort=sort,
                created_from=since,
                closed_from=closed_from,
                statuses=ORDER_STATUSES,  # a cancelled order's pack has a conversation too
            )
            state.total_orders = page.paging.total
            await self._orders_packs(page.results, one)
            if await self._paged(len(page.results), page.paging.total, then):
                return

    async def _orders_packs(
        self, orders: Iterable[MlOrder], one: Callable[[int], Awaitable[None]]
    ) -> None:
        """Each order's pack, once per run (an order read twice, or in both passes)."""
        packs = dict.fromkeys(order.pack_id or order.id for order in orders)
        fresh = [pack_id for pack_id in packs if pack_id not in self.packs_read]
        self.packs_read.update(fresh)
        await asyncio.gather(*(one(pack_id) for pack_id in fresh))
