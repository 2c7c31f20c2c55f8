"""Multiget throughput of the ML client under an outbound rate limit, across processes.

Fetches every item of a 10,000-item seller (multiget in batches of 20) from the sandbox,
twice in one run: first in this process without limits (the baseline: what the sandbox
and client do flat out), then split between ``--processes`` worker processes (4 by
default), each its own ML client, sharing one limit of ``--limit`` requests per
``--window-s`` through the leasing limiter's budget in Redis, while the sandbox enforces
the same limit on the items family. The sandbox's counters are the judge: no 429, and
never more than the limit in any of its windows. The figure of merit is the limited run's
time against the minimum that the limit allows (ratio; target >= 0.9); each process's
time shows the fair share. ``--live K`` puts K of the processes in the limiter's live
lane (the rest fetch as a sync does, in the bulk lane): they finish first.

``--slow-ms M --slow-s S`` makes the sandbox answer M ms late for the limited run's
first S seconds, then at full speed (issue 18: permits must not queue for connections
while ML is slow); ``--max-connections`` is each process's ``max_connections``.

    uv run python -m bench.ml_multiget [--items 10000] [--limit 300] [--window-s 60] \\
        [--processes 4] [--live 0] [--max-connections 64] [--slow-ms 0 --slow-s 0]

Needs Redis from scripts/stack (the limiter's state) with .stack/env sourced.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import subprocess
import sys
import time
from contextlib import nullcontext
from typing import Any

from pydantic import SecretStr

from bench.catalog_support import one_seller_catalog
from peepers_catalog.settings import Settings as CatalogSettings
from peepers_common.ml import HttpMlApi, MlOAuthClient, OAuthTokenProvider, TokenSet, ml_session
from peepers_common.ml.ratelimit import OutboundLimiter, bulk_lane
from peepers_common.namespaces import connect_redis
from peepers_common.settings import MlApiSettings, MlLimit
from peepers_sandbox.app import Sandbox, run_sandbox
from peepers_sandbox.config import DEMO_APP_ID, DEMO_CLIENT_SECRET
from tests.support import ml_client, unique


async def _baseline(sb: Sandbox, seller: int, ids: list[str]) -> float:
    async with ml_client(sb, [seller], call_budget_s=600.0, multiget_concurrency=8) as (api, _):
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


async def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One worker process: its own client and limiter, the shared budget in Redis."""
    settings = MlApiSettings(
        base_url=spec["url"],
        app_id=DEMO_APP_ID,
        client_secret=SecretStr(DEMO_CLIENT_SECRET),
        call_budget_s=600.0,
        multiget_concurrency=8,
        max_connections=spec["max_connections"],
        app_limit=MlLimit(amount=spec["limit"], per_s=spec["window_s"]),
        family_limits={},
    )
    redis = connect_redis(CatalogSettings().redis)
    try:
        async with ml_session(settings) as session:
            tokens = OAuthTokenProvider(MlOAuthClient(session, settings))
            tokens.add(spec["seller"], TokenSet.model_validate(spec["token"]))
            limiter = OutboundLimiter(redis, settings, scope=spec["scope"])
            api = HttpMlApi(session, settings, tokens, limiter)
            with nullcontext() if spec["live"] else bulk_lane():
                start = time.time()
                result = await api.multiget_items(spec["ids"], seller_id=spec["seller"])
                end = time.time()
            await limiter.aclose()
    finally:
        await redis.aclose()
    return {"items": len(result.items), "start": start, "end": end}


def _run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one worker process to the end (in a thread); its result."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.ml_multiget", "--child"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    out, _ = process.communicate(json.dumps(spec).encode())
    if process.returncode != 0:
        msg = f"a worker process failed ({process.returncode})"
        raise SystemExit(msg)
    result: dict[str, Any] = json.loads(out)
    return result


async def _limited(
    sb: Sandbox, seller: int, ids: list[str], args: argparse.Namespace
) -> tuple[float, list[dict[str, Any]]]:
    scope = unique("multiget")
    processes = args.processes
    specs = [
        {
            "url": sb.url,
            "seller": seller,
            "token": await sb.admin.mint_token(seller),
            "ids": ids[n::processes],
            "limit": args.limit,
            "window_s": args.window_s,
            "max_connections": args.max_connections,
            "scope": scope,
            "live": n < args.live,
        }
        for n in range(processes)
    ]
    if args.slow_ms:
        await sb.admin.set_faults(latency_ms=args.slow_ms)
    running = asyncio.gather(*(asyncio.to_thread(_run_child, spec) for spec in specs))
    if args.slow_ms:
        await asyncio.sleep(args.slow_s)
        await sb.admin.clear_faults()
    results = await running
    # From the first request to the last answer (the processes' start-up left out).
    return max(r["end"] for r in results) - min(r["start"] for r in results), list(results)


async def main(args: argparse.Namespace) -> None:
    items, limit, window_s = args.items, args.limit, args.window_s
    processes, live = args.processes, args.live
    if window_s not in (1, 60):
        msg = "the sandbox enforces 1 s or 60 s windows"
        raise SystemExit(msg)
    async with run_sandbox(one_seller_catalog(items)) as sb:
        seller = sb.state.market.sellers[0]
        ids = list(sb.state.market.items_by_seller[seller])
        requests = sum(math.ceil(len(ids[n::processes]) / 20) for n in range(processes))

        baseline = await _baseline(sb, seller, ids)
        print(
            f"baseline (no limit, one process): {math.ceil(len(ids) / 20)} requests in "
            f"{baseline:.2f} s = {len(ids) / baseline:.0f} items/s"
        )

        rule = {"family": "items", "per_second" if window_s == 1 else "per_minute": limit}
        await sb.admin.set_rate_limits([rule])
        await sb.admin.reset_rate_limit_counters()
        elapsed, results = await _limited(sb, seller, ids, args)
        counter = await _items_counter(sb)
        if sum(r["items"] for r in results) != len(ids):
            msg = "not every item came back"
            raise SystemExit(msg)
        # The limit lets `limit` requests go at once, then `limit` more each window.
        best = (requests - 1) // limit * window_s
        slow = f", {args.slow_ms} ms slow for {args.slow_s} s" if args.slow_ms else ""
        print(
            f"limited ({limit} per {window_s} s, {processes} processes, {live} live, "
            f"{args.max_connections} connections each{slow}): "
            f"{requests} requests in {elapsed:.2f} s; minimum the limit allows {best} s"
        )
        first = min(r["start"] for r in results)
        for n, r in enumerate(results):
            lane = "live" if n < live else "bulk"
            print(
                f"  process {n} ({lane}): {r['items']} items, done after {r['end'] - first:.1f} s"
            )
        print(f"ratio to the theoretical best: {best / elapsed:.3f}  (target >= 0.9)")
        busiest = int(counter["max_per_minute" if window_s == 60 else "max_per_second"])
        verdict = "never exceeded" if busiest <= limit and not counter["limited"] else "EXCEEDED"
        print(
            f"sandbox items counter: total={counter['total']} limited(429)={counter['limited']} "
            f"max/s={counter.get('max_per_second')} max/min={counter.get('max_per_minute')}: "
            f"the limit of {limit} was {verdict}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--window-s", type=int, default=60)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--live", type=int, default=0, help="processes in the live lane")
    parser.add_argument("--max-connections", type=int, default=64)
    parser.add_argument("--slow-ms", type=int, default=0, help="the sandbox's latency at first")
    parser.add_argument("--slow-s", type=float, default=0.0, help="for how long")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(child(json.loads(sys.stdin.read())))))
    else:
        asyncio.run(main(args))
