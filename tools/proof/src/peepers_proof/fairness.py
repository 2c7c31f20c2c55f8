"""Webhook -> cache latency probes, for the fairness measurement (``--fairness``).

A probe changes one item's price at ML (the sandbox's admin event, which notifies as ML
does) and times until the catalog's Redis holds the new price. Probes go to the ordinary
sellers, round robin, one at a time: run while the huge seller's full sync is going and
again once it is done, their p99s compare what the sync costs everyone else.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from decimal import Decimal

from peepers_catalog.adapters.redis_store import RedisItemStore
from peepers_common.namespaces import Namespace
from peepers_proof.stack import Stack

PROBE_TIMEOUT_S = 60.0


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (``share`` in 0..1) of ``values``."""
    ordered = sorted(values)
    rank = max(1, round(share * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


async def probe(
    stack: Stack, items: dict[int, list[str]], count: int, until: asyncio.Event | None = None
) -> list[float]:
    """Latencies in ms of ``count`` price changes across the sellers of ``items``.

    Fewer if ``until`` is set first.
    """
    client = stack.redis()
    store = RedisItemStore(client, Namespace("catalog", scope=stack.plan.scope))
    sellers = sorted(items)
    latencies: list[float] = []
    try:
        for i in range(count):
            if until is not None and until.is_set():
                break
            seller = sellers[i % len(sellers)]
            item_id = items[seller][(i // len(sellers)) % len(items[seller])]
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
            latencies.append((time.monotonic() - started) * 1000)
    finally:
        await client.aclose()
    return latencies
