"""Webhook -> cache latency probes, for the fairness measurement (``--fairness N``).

The window (`Runner`): the ordinary sellers log in first and their initial syncs and
backfills finish; then ``N`` probes run with no sync going (*without*); then the huge
seller logs in and probes run while its full sync runs, until the sync is done
(*during*). Their p99s compare what the huge sync costs everyone else (target: at most
2x). The sync's own time is set against its bound at the budget left to it (target:
at most 1.2x where that budget binds).

A probe changes one item's price at ML (the sandbox's admin event, which notifies as ML
does) and times until the catalog's Redis holds the new price. Probes go to the ordinary
sellers, round robin, one at a time.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from decimal import Decimal
from typing import Any

from peepers_catalog.adapters.redis_store import RedisItemStore
from peepers_catalog.adapters.redis_sync import RedisSyncCheckpoints
from peepers_catalog.ports import SyncState
from peepers_catalog.sync import multiget_requests, scan_requests
from peepers_common.ml.ratelimit import bulk_rate
from peepers_common.namespaces import Namespace
from peepers_common.settings import MlLimit
from peepers_proof.stack import Stack

PROBE_TIMEOUT_S = 60.0
WINDOW_S = 60.0
WITHOUT = "without the sync"
DURING = "during the huge sync"


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (``share`` in 0..1) of ``values``."""
    ordered = sorted(values)
    rank = max(1, round(share * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def sync_requests(items: int, chunk: int) -> int:
    """The ML requests of a first full sync of ``items``: its scan pages and multigets."""
    return scan_requests(items) + multiget_requests(items, chunk)


def sync_bound_s(items: int, chunk: int, per_minute: int, others_per_minute: float = 0) -> float:
    """The huge sync's time at the budget left to it.

    Its requests spread evenly over what bulk leases can take of ``per_minute`` once the
    others' requests (webhooks, backfills: ``others_per_minute``, as measured) are served
    (`bulk_rate`: the limiter's counted window and the webhooks' reserve included; before
    session 9 the bound left both out, and a sync that kept pace read as 1.4x).
    """
    rate = bulk_rate(MlLimit(amount=per_minute, per_s=int(WINDOW_S)), others_per_minute / WINDOW_S)
    if rate <= 0:
        return math.inf
    return sync_requests(items, chunk) / rate


async def ml_requests(stack: Stack) -> int:
    """Every request the sandbox (ML) has counted so far, of every family."""
    return sum(int(counter["total"]) for counter in await stack.admin.rate_limit_counters())


def figures(
    without: Sequence[float],
    during: Sequence[float],
    sync_s: float | None,
    bound_s: float,
    others_per_minute: float,
) -> dict[str, Any]:
    """Each phase's (n, p50, p99), the p99 ratio, the sync's time against its bound.

    A phase without probes gives no latency line and no ratio.
    """
    found: dict[str, Any] = {}
    for name, latencies in ((WITHOUT, without), (DURING, during)):
        if latencies:
            p50, p99 = (percentile(latencies, q) for q in (0.5, 0.99))
            n = len(latencies)
            found[f"webhook->cache ms {name} (n, p50, p99)"] = (n, round(p50), round(p99))
    if without and during:
        ratio = percentile(during, 0.99) / percentile(without, 0.99)
        found["webhook->cache p99 ratio during/without (target <= 2)"] = round(ratio, 2)
    found["ML requests/min of the others during the huge sync"] = round(others_per_minute)
    if sync_s is not None:
        found["huge sync s, bound s at the budget left to it, ratio (target <= 1.2)"] = (
            round(sync_s, 1),
            round(bound_s, 1),
            round(sync_s / bound_s, 2),
        )
    return found


def targets(items: dict[int, list[str]]) -> Iterator[str]:
    """Item ids round robin over the sellers: one item of each seller, then the next."""
    sellers = sorted(items)
    for i in itertools.count():
        seller = sellers[i % len(sellers)]
        yield items[seller][(i // len(sellers)) % len(items[seller])]


async def run_probes(
    ids: Iterator[str],
    one: Callable[[str], Awaitable[float]],
    *,
    count: int | None = None,
    until: asyncio.Event | None = None,
) -> list[float]:
    """``one`` probe after the other, ``count`` of them or until ``until`` is set.

    Whichever comes first; a probe started before ``until`` is set is counted.
    """
    latencies: list[float] = []
    while count is None or len(latencies) < count:
        if until is not None and until.is_set():
            break
        latencies.append(await one(next(ids)))
    return latencies


async def probe(
    stack: Stack,
    items: dict[int, list[str]],
    *,
    count: int | None = None,
    until: asyncio.Event | None = None,
) -> list[float]:
    """Latencies in ms of price changes across the sellers of ``items`` (`run_probes`)."""
    client = stack.redis()
    store = RedisItemStore(client, Namespace("catalog", scope=stack.plan.scope))

    async def one(item_id: str) -> float:
        started = time.monotonic()
        changed = await stack.admin.event("price_change", item_id=item_id)
        price = Decimal(str(changed["price"]))
        while True:
            cached = (await store.get_many([item_id])).get(item_id)
            if cached is not None and cached.price == price:
                break
            if time.monotonic() - started > PROBE_TIMEOUT_S:
                stack.say(f"probe of {item_id} not cached within {PROBE_TIMEOUT_S:.0f} s")
                break
            await asyncio.sleep(0.02)
        return (time.monotonic() - started) * 1000

    try:
        return await run_probes(targets(items), one, count=count, until=until)
    finally:
        await client.aclose()


async def sync_done(stack: Stack, seller: int, *, timeout_s: float) -> SyncState | None:
    """The seller's finished full sync (its checkpoint), or None if not done in time."""
    client = stack.redis()
    checkpoints = RedisSyncCheckpoints(client, Namespace("catalog", scope=stack.plan.scope))
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            state = await checkpoints.load(seller)
            if state is not None and state.phase == "done":
                return state
            await asyncio.sleep(0.2)
        return None
    finally:
        await client.aclose()
