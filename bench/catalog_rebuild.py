"""How fast the catalog worker reconverges after losing its Redis, against the ML limit.

The real worker (``python -m peepers_catalog worker``) runs on a redis-server of the
bench's own (the shared one is never flushed), with an outbound limit of N requests a
minute that the sandbox enforces too (one seller with ``--items`` items). Steps:

1. ``seller.connected``: the worker syncs the seller (it is now in its roster);
2. ``FLUSHALL`` on the private Redis, and the sandbox's rate-limit counters reset (the
   client's limiter state was in that Redis too: both start a fresh window);
3. the clock runs until the worker has noticed the loss (its periodic epoch check),
   resynced the seller and marked the epoch ready, and every item is cached again.

The bound is what the limit allows for the requests a resync must make (scan pages plus
the empty one that ends the scroll, then one multiget per 20 ids), spread evenly:
requests / N minutes. Goal: reconverged / bound <= 1.2. Detection (up to
``CATALOG_REBUILD__CHECK_EVERY_S``, 5 s by default) counts against it.

    uv run python -m bench.catalog_rebuild [--items 20000] [--per-minute 1200]

Needs the stack (``scripts/stack up``) with ``.stack/env`` sourced.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis

from bench.catalog_support import (
    connect_seller,
    kafka_settings,
    log,
    run_then_delete_topics,
    sandbox_process,
    token_broker,
    wait_ready,
    worker_run,
)
from bench.catalog_sync import minimum_s, multiget_requests, scan_requests
from peepers_catalog.settings import Settings
from peepers_sandbox.client import SandboxAdmin
from tests.integration.catalog.worker import WorkerRun, catalog_topics, worker_process
from tests.support import private_redis

DONE = 'peepers_catalog_rebuild_finished_total{outcome="done"}'
STARTED = "peepers_catalog_rebuild_started_total"


def resync_bound_s(items: int, chunk: int, per_minute: int) -> float:
    """The least time N requests a minute allow for one full resync of ``items`` items."""
    return minimum_s(scan_requests(items) + multiget_requests(items, chunk), per_minute)


async def _cached(redis: aioredis.Redis, run: WorkerRun, seller: int) -> int:
    return int(await redis.hlen(f"catalog:{run.scope}:seller:{seller}:docs"))


async def _until(
    what: str, check: Callable[[], Awaitable[bool]], timeout_s: float, run: WorkerRun
) -> float:
    """Poll ``check`` every 0.2 s; returns the monotonic time it turned true."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            msg = f"{what} did not happen within {timeout_s:.0f} s:\n{run.log_tail()}"
            raise SystemExit(msg)
        await asyncio.sleep(0.2)
    return time.monotonic()


async def main(items: int, per_minute: int) -> None:
    kafka = kafka_settings()
    prefix = await catalog_topics(kafka)
    chunk = Settings().sync.chunk
    bound = resync_bound_s(items, chunk, per_minute)
    requests = scan_requests(items) + multiget_requests(items, chunk)
    log(
        f"{items:,} items: a resync needs {requests} requests; at {per_minute}/min >= {bound:.1f} s"
    )
    with tempfile.TemporaryDirectory() as tmp, sandbox_process(Path(tmp), items) as sandbox:
        workdir = Path(tmp)
        async with (
            private_redis(workdir) as url,
            aiohttp.ClientSession() as http,
            token_broker(SandboxAdmin(sandbox.url, http)) as broker_url,
        ):
            admin = SandboxAdmin(sandbox.url, http)
            await admin.set_rate_limits([{"family": "*", "per_minute": per_minute}])
            run = worker_run(
                prefix,
                sandbox.url,
                broker_url,
                workdir,
                CATALOG_REDIS__URL=url,
                CATALOG_REDIS__USERNAME="default",
                CATALOG_ML__APP_LIMIT=json.dumps({"amount": per_minute, "per_s": 60}),
            )
            redis = aioredis.Redis.from_url(url)
            try:
                with worker_process(run) as process:
                    await wait_ready(run, process, timeout_s=60)
                    log("initial sync (seller.connected)")
                    await connect_seller(run, sandbox.seller)

                    async def synced() -> bool:
                        return await _cached(redis, run, sandbox.seller) >= items

                    await _until("the initial sync", synced, 2 * bound + 120, run)
                    log("synced; flushing the worker's Redis")
                    await admin.reset_rate_limit_counters()
                    started = time.monotonic()
                    await redis.flushall()

                    async def noticed() -> bool:
                        return await run.metric(STARTED) >= 2

                    async def rebuilt() -> bool:
                        done = await run.metric(DONE) >= 2
                        return done and await _cached(redis, run, sandbox.seller) >= items

                    seen = await _until("noticing the loss", noticed, 60, run)
                    finished = await _until("the rebuild", rebuilt, 3 * bound + 120, run)
                    counters = await admin.rate_limit_counters()
            finally:
                await redis.aclose()
    took = finished - started
    refused = sum(c["limited"] for c in counters)
    print()
    print("| items | limit | requests | noticed after | reconverged after | bound | ratio | 429s |")
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {items:,} | {per_minute}/min | {requests} | {seen - started:.1f} s | {took:.1f} s "
        f"| {bound:.1f} s | **{took / bound:.3f}** | {refused} |"
    )
    verdict = "met" if took <= 1.2 * bound else "NOT met"
    print(f"\ntarget reconverged / bound <= 1.2: {verdict}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--per-minute", type=int, default=1200, help="outbound limit N a minute")
    args = parser.parse_args()
    run_then_delete_topics(main(args.items, args.per_minute))
