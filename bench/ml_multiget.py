"""Multiget throughput of the ML client under an outbound rate limit.

Fetches every item of a 10,000-item seller (scan, then multiget in batches of 20) from
the sandbox, twice in one run: first without limits (the baseline: what the sandbox and
client do flat out), then with the sandbox enforcing N requests per window on the items
family and the client configured with the same limit. The figure of merit is the limited
run's time against the minimum that the limit allows (ratio; target >= 0.9), with zero
429s from the sandbox.

    uv run python -m bench.ml_multiget [--items 10000] [--limit 250] [--window-s 60]

Needs Redis from scripts/stack (the limiter's state) with .stack/env sourced.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from typing import Any

from bench.catalog_support import one_seller_catalog
from peepers_common.settings import MlLimit
from peepers_sandbox.app import Sandbox, run_sandbox
from tests.support import ml_client


async def _fetch_all(sb: Sandbox, seller: int, ids: list[str], **limits: Any) -> float:
    async with ml_client(sb, [seller], call_budget_s=600.0, multiget_concurrency=8, **limits) as (
        api,
        _tokens,
    ):
        start = time.perf_counter()
        result = await api.multiget_items(ids, seller_id=seller)
        elapsed = time.perf_counter() - start
    if len(result.items) != len(ids):
        msg = f"only {len(result.items)} of {len(ids)} items came back"
        raise SystemExit(msg)
    return elapsed


async def _items_counter(sb: Sandbox) -> dict[str, Any]:
    for counter in await sb.admin.rate_limit_counters():
        if counter["family"] == "items":
            return counter
    return {"total": 0, "limited": 0}


async def main(items: int, limit: int, window_s: int) -> None:
    async with run_sandbox(one_seller_catalog(items)) as sb:
        seller = sb.state.market.sellers[0]
        ids = list(sb.state.market.items_by_seller[seller])
        requests = math.ceil(len(ids) / 20)

        baseline = await _fetch_all(sb, seller, ids)
        print(
            f"baseline (no limit): {requests} requests in {baseline:.2f} s "
            f"= {requests / baseline:.0f} req/s, {len(ids) / baseline:.0f} items/s"
        )

        if window_s not in (1, 60):
            msg = "the sandbox enforces 1 s or 60 s windows"
            raise SystemExit(msg)
        rule = {"family": "items", "per_second" if window_s == 1 else "per_minute": limit}
        await sb.admin.set_rate_limits([rule])
        await sb.admin.reset_rate_limit_counters()
        limited = await _fetch_all(sb, seller, ids, app_limit=MlLimit(amount=limit, per_s=window_s))
        counter = await _items_counter(sb)
        # The limit lets `limit` requests go at once, then `limit` more each window.
        best = (requests - 1) // limit * window_s
        print(
            f"limited ({limit} per {window_s} s): {requests} requests in {limited:.2f} s "
            f"= {requests / limited:.1f} req/s; minimum the limit allows {best} s"
        )
        print(f"ratio to the theoretical best: {best / limited:.3f}  (target >= 0.9)")
        print(
            f"sandbox items counter: total={counter['total']} limited(429)={counter['limited']} "
            f"max/s={counter.get('max_per_second')} max/min={counter.get('max_per_minute')}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--limit", type=int, default=250)
    parser.add_argument("--window-s", type=int, default=60)
    args = parser.parse_args()
    asyncio.run(main(args.items, args.limit, args.window_s))
