"""Full catalog sync: every item of a seller, resumable, safe beside live webhooks.

Phases, each checkpointed through `SyncCheckpoints`:

1. **scanning**: every item id via ``search_type=scan``, appended to a durable list. A
   scroll cannot be resumed (ML expires it after minutes), so a crash here rescans.
2. **applying**: the ids in chunks; each chunk is one concurrent multiget (batches of 20
   under the shared outbound rate limit) and goes through the same `apply_item` as a
   webhook, so the ``last_updated`` rule decides when both touch an item. The next
   chunk is fetched while the current one is applied, so the rate limit, not our own
   writes, sets the pace. The checkpoint moves after each chunk; a crash redoes at most
   one chunk, which changes nothing the second time.
3. **finishing**: cached items the scan did not list are checked once more with a
   multiget (a webhook may have added them after the scan) and marked gone only if ML
   no longer has them.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from uuid import uuid4

from peepers_catalog import metrics
from peepers_catalog.handlers import Catalog, Outcome, apply_item
from peepers_catalog.ports import SyncCheckpoints, SyncState
from peepers_common.errors import ResourceBusy
from peepers_common.ml import Multiget
from peepers_common.ml.client import MULTIGET_MAX_IDS, SCAN_PAGE_SIZE
from peepers_common.ml.ratelimit import bulk_lane

_ID_PAGE: Final = 5_000


@dataclass(frozen=True)
class SyncOptions:
    chunk: int = 200  # ids per checkpoint: ten multigets of 20
    apply_concurrency: int = 20
    scan_flush: int = 1_000
    restart: bool = False  # start over even if an unfinished run exists
    # Names the run (the seller event's id when an event triggered it): a finished run
    # of the same id is not repeated when the event is redelivered, and the redelivery
    # takes over the claim of a worker that died holding it.
    run_id: str | None = None
    claim_ttl_s: float = 300.0


Progress = Callable[[SyncState], None]


# A sync's ML requests, for the benches' and the proof's bound at a budget.
def scan_requests(items: int, page: int = SCAN_PAGE_SIZE) -> int:
    """Pages of a scan: every page with ids, then the empty one that ends the scroll."""
    return math.ceil(items / page) + 1


def multiget_requests(items: int, chunk: int, batch: int = MULTIGET_MAX_IDS) -> int:
    """Multigets of the apply phase: each chunk of ids split into batches of `batch`."""
    return sum(math.ceil(min(chunk, items - start) / batch) for start in range(0, items, chunk))


async def full_sync(
    seller_id: int,
    catalog: Catalog,
    checkpoints: SyncCheckpoints,
    *,
    options: SyncOptions | None = None,
    progress: Progress | None = None,
) -> SyncState:
    """Run (or resume) the seller's full sync; returns the finished state with counts."""
    opts = options or SyncOptions()
    owner = opts.run_id or f"run-{uuid4().hex}"
    holder = await checkpoints.claim(seller_id, owner, opts.claim_ttl_s)
    if holder is not None:
        msg = f"seller {seller_id}'s catalog sync is running elsewhere ({holder})"
        raise ResourceBusy(msg)
    try:
        claimed = _Claimed(checkpoints, owner, opts.claim_ttl_s)
        # Bulk: the outbound limiter serves webhook-driven fetches first.
        with bulk_lane():
            return await _run(seller_id, catalog, claimed, opts, progress)
    finally:
        await checkpoints.release(seller_id, owner)


class _Claimed:
    """The checkpoints, with every save extending the claim: a live sync keeps it."""

    def __init__(self, checkpoints: SyncCheckpoints, owner: str, ttl_s: float) -> None:
        self._inner = checkpoints
        self._owner = owner
        self._ttl_s = ttl_s
        self.load = checkpoints.load
        self.reset_ids = checkpoints.reset_ids
        self.append_ids = checkpoints.append_ids
        self.ids = checkpoints.ids
        self.claim = checkpoints.claim
        self.release = checkpoints.release

    async def save(self, state: SyncState) -> None:
        holder = await self._inner.claim(state.seller_id, self._owner, self._ttl_s)
        if holder is not None:
            msg = f"seller {state.seller_id}'s sync was taken over by {holder}"
            raise ResourceBusy(msg)
        await self._inner.save(state)


async def _run(
    seller_id: int,
    catalog: Catalog,
    checkpoints: SyncCheckpoints,
    opts: SyncOptions,
    progress: Progress | None,
) -> SyncState:
    report = progress or (lambda _state: None)
    label = str(seller_id)
    state = await checkpoints.load(seller_id)
    repeated = state is not None and state.phase == "done" and state.run_id == opts.run_id
    if state is not None and repeated and not opts.restart:
        return state
    if state is None or state.phase == "done" or opts.restart:
        run_id = opts.run_id or uuid4().hex
        state = SyncState(seller_id, run_id, "scanning", started_at=catalog.clock())
        await checkpoints.save(state)
    metrics.SYNC_RUNNING.labels(label).set(1)
    try:
        if state.phase == "scanning":
            await _scan(state, catalog, checkpoints, opts, report)
        metrics.SYNC_TOTAL.labels(label).set(state.total)
        await _apply(state, catalog, checkpoints, opts, report)
        await _finish(state, catalog, checkpoints)
    finally:
        metrics.SYNC_RUNNING.labels(label).set(0)
    report(state)
    return state


async def _scan(
    state: SyncState,
    catalog: Catalog,
    checkpoints: SyncCheckpoints,
    opts: SyncOptions,
    report: Progress,
) -> None:
    await checkpoints.reset_ids(state.seller_id)
    state.total = 0
    batch: list[str] = []
    async for item_id in catalog.ml.iter_item_ids(seller_id=state.seller_id):
        batch.append(item_id)
        if len(batch) >= opts.scan_flush:
            await checkpoints.append_ids(state.seller_id, batch)
            state.total += len(batch)
            batch = []
            report(state)
    if batch:
        await checkpoints.append_ids(state.seller_id, batch)
        state.total += len(batch)
    state.phase = "applying"
    state.next_index = 0
    await checkpoints.save(state)
    report(state)


async def _apply(
    state: SyncState,
    catalog: Catalog,
    checkpoints: SyncCheckpoints,
    opts: SyncOptions,
    report: Progress,
) -> None:
    seller_id = state.seller_id

    async def fetch(start: int) -> tuple[int, Multiget]:
        ids = await checkpoints.ids(seller_id, start, start + opts.chunk)
        return len(ids), await catalog.ml.multiget_items(ids, seller_id=seller_id)

    gate = asyncio.Semaphore(opts.apply_concurrency)

    async def apply_one(item_index: int, result: Multiget) -> Outcome:
        async with gate:
            return await apply_item(result.items[item_index], catalog)

    pending = (
        asyncio.ensure_future(fetch(state.next_index)) if state.next_index < state.total else None
    )
    while pending is not None:
        count, result = await pending
        following = state.next_index + count
        pending = (
            asyncio.ensure_future(fetch(following)) if count and following < state.total else None
        )
        try:
            outcomes = await asyncio.gather(
                *(apply_one(i, result) for i in range(len(result.items)))
            )
            if result.missing:
                gone = await catalog.store.mark_gone(seller_id, result.missing)
                metrics.ITEMS_GONE.inc(gone)
                _count(state, Outcome.GONE, len(result.missing))
        except BaseException:
            if pending is not None:
                pending.cancel()
            raise
        for outcome in outcomes:
            _count(state, outcome)
        metrics.SYNC_ITEMS.labels(str(seller_id)).inc(count)
        state.next_index = following
        await checkpoints.save(state)
        report(state)
        if not count:
            break


async def _finish(state: SyncState, catalog: Catalog, checkpoints: SyncCheckpoints) -> None:
    seller_id = state.seller_id
    scanned: set[str] = set()
    for start in range(0, state.total, _ID_PAGE):
        scanned.update(await checkpoints.ids(seller_id, start, start + _ID_PAGE))
    unlisted = sorted(await catalog.store.seller_item_ids(seller_id) - scanned)
    if unlisted:
        # A webhook may have cached an item created after the scan: ask ML again.
        result = await catalog.ml.multiget_items(unlisted, seller_id=seller_id)
        for item in result.items:
            _count(state, await apply_item(item, catalog))
        if result.missing:
            metrics.ITEMS_GONE.inc(await catalog.store.mark_gone(seller_id, result.missing))
            _count(state, Outcome.GONE, len(result.missing))
    state.phase = "done"
    state.finished_at = catalog.clock()
    await checkpoints.save(state)
    await checkpoints.reset_ids(seller_id)


def _count(state: SyncState, outcome: Outcome, n: int = 1) -> None:
    state.counts[outcome.value] = state.counts.get(outcome.value, 0) + n
