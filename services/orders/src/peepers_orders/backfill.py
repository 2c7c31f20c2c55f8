"""Backfill on ``seller.connected``: the seller's orders of the last N days, into the cache.

`/orders/search` pages by offset, newest first (``sort=date_desc``), from a creation
date fixed when the run starts. A seller's search sorts by ``date_closed`` (FACTS.md
4.3), so an order confirmed while the run reads it moves to the newest end, as an order
created meanwhile lands there. Oldest first, each such move slid the orders after it
back one place and one across the page boundary was never read (session 10); newest
first, an order not changed meanwhile only moves further on, so it is read (perhaps
twice: the apply is idempotent). The orders confirmed or created meanwhile may be passed
over, and are their own notifications' to cache. Every status is asked for: a plain
search hides cancelled orders (FACTS.md 4.1). Each page's orders go through
`handlers.apply_order`, the same mapping as webhooks, from the search's own order bodies
(no extra fetch per order); the checkpoint (offset, counts) is saved after each page, so
a run interrupted by a restart or a rebalance resumes where it stopped. The orders are
announced as ``order.snapshot`` (they predate the connection) and send no email.

One run per seller at a time: a run holds the seller's lease (`BackfillCheckpoints.claim`,
renewed each page). A second request meanwhile (a seller connecting while a rebuild
backfills them) raises `BackfillBusy` and is retried; by then the first run is done,
and a run done at or after the moment a request asks for (``not_before``: the connection)
covers it, so the history is read once, not twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final
from uuid import uuid4

from peepers_common.events import occurred
from peepers_common.ml.models import ORDER_STATUSES, MlOrder
from peepers_common.ml.ratelimit import bulk_lane
from peepers_orders import metrics
from peepers_orders.errors import BackfillBusy
from peepers_orders.handlers import Orders, apply_order
from peepers_orders.ports import BackfillCheckpoints, BackfillState

log = logging.getLogger(__name__)

# How long a run holds the seller between two pages (a page waits for the ML budget).
LEASE_S: Final = 120.0


@dataclass(frozen=True)
class BackfillOptions:
    days: int = 30
    page_size: int = 50
    run_id: str = "manual"
    restart: bool = False
    apply_concurrency: int = 10
    # A run done at or after this covers the request (None: only this very run does).
    not_before: datetime | None = None


async def backfill(
    seller_id: int,
    orders: Orders,
    checkpoints: BackfillCheckpoints,
    *,
    options: BackfillOptions,
    progress: Callable[[BackfillState], None] | None = None,
) -> BackfillState:
    """Run (or resume) the seller's backfill; returns its final state.

    Raises:
        BackfillBusy: another run holds the seller now.
    """
    owner = f"backfill-{uuid4().hex}"
    if not await checkpoints.claim(seller_id, owner, LEASE_S):
        msg = f"seller {seller_id} is being backfilled by another run"
        raise BackfillBusy(msg)
    try:
        # Across replicas too, the outbound limiter serves webhook-driven fetches first.
        with bulk_lane():
            return await _run(seller_id, orders, checkpoints, owner, options, progress)
    finally:
        await checkpoints.release(seller_id, owner)


async def _run(
    seller_id: int,
    orders: Orders,
    checkpoints: BackfillCheckpoints,
    owner: str,
    options: BackfillOptions,
    progress: Callable[[BackfillState], None] | None,
) -> BackfillState:
    state = await checkpoints.load(seller_id)
    if state is not None and state.phase == "done" and _covers(state, options):
        return state  # this very run is done (a redelivered event), or a later one
    if state is None or state.phase == "done" or options.restart:
        since = occurred(orders.clock()) - timedelta(days=options.days)
        state = BackfillState(
            seller_id=seller_id, run_id=options.run_id, created_from=since, newest_first=True
        )
        await checkpoints.save(state)
    elif not state.newest_first:
        # Saved by the oldest-first code of before: its offset means nothing newest first.
        state = replace(state, offset=0, newest_first=True)
    label = str(seller_id)
    metrics.BACKFILL_RUNNING.labels(label).set(1)
    gate = asyncio.Semaphore(options.apply_concurrency)

    revealed_by = f"backfill:{state.run_id}"

    async def one(order: MlOrder) -> str:
        async with gate:
            return (await apply_order(order, revealed_by, orders)).value

    try:
        while True:
            page = await orders.ml.search_orders(
                seller_id=seller_id,
                offset=state.offset,
                limit=options.page_size,
                sort="date_desc",
                created_from=state.created_from,
                statuses=sorted(ORDER_STATUSES),
            )
            metrics.BACKFILL_TOTAL.labels(label).set(page.paging.total)
            outcomes = Counter(await asyncio.gather(*(one(order) for order in page.results)))
            counts = Counter(state.counts)
            counts.update(outcomes)
            done = not page.results or state.offset + len(page.results) >= page.paging.total
            state = replace(
                state,
                offset=state.offset + len(page.results),
                total=page.paging.total,
                counts=dict(counts),
                phase="done" if done else "running",
            )
            if done:
                state = replace(state, finished_at=occurred(orders.clock()))
            await checkpoints.save(state)
            metrics.BACKFILL_ORDERS.labels(label).inc(len(page.results))
            if progress is not None:
                progress(state)
            if done:
                log.info("backfill of seller %d done: %s", seller_id, state.counts)
                return state
            await checkpoints.claim(seller_id, owner, LEASE_S)
    finally:
        metrics.BACKFILL_RUNNING.labels(label).set(0)


def _covers(done: BackfillState, options: BackfillOptions) -> bool:
    if done.run_id == options.run_id:
        return True
    return (
        options.not_before is not None
        and done.finished_at is not None
        and done.finished_at >= options.not_before
    )
