"""A seller's full catalog sync under an outbound rate limit, against the time the limit allows.

Runs ``peepers_catalog.sync.full_sync`` (the worker's code, its default `SyncOptions`
and ML client settings) in this process, twice, each into its own scratch Redis scope:

1. baseline: no outbound limit (what the machine does flat out);
2. limited: the client configured with N requests a minute for the app (``app_limit``,
   the limiter's state in Redis) and the sandbox enforcing the same N a minute over
   every family, so any excess would come back as 429.

The sandbox runs as its own process (one seller with ``--items`` items); events go to a
scratch ``<prefix>peepers.catalog.v1`` topic. The minimum is the requests the sync must
make (scan pages of 100 ids plus the empty page that ends the scroll, then one multiget
per 20 ids of each chunk) divided by N, in minutes; target: actual / minimum <= 1.2.

    uv run python -m bench.catalog_sync [--items 10000] [--per-minute 300]

Needs the stack (``scripts/stack up``) with ``.stack/env`` sourced.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from pydantic import SecretStr

from bench.catalog_support import (
    cleanup_scope,
    kafka_settings,
    log,
    run_then_delete_topics,
    sandbox_process,
)
from peepers_catalog.adapters.redis_store import RedisItemStore
from peepers_catalog.adapters.redis_sync import RedisSyncCheckpoints
from peepers_catalog.app import sync_options
from peepers_catalog.handlers import Catalog
from peepers_catalog.ports import SyncState
from peepers_catalog.settings import Settings
from peepers_catalog.sync import full_sync
from peepers_catalog.sync import multiget_requests as multiget_requests
from peepers_catalog.sync import scan_requests as scan_requests
from peepers_common.kafka import AIOKafkaEventPublisher
from peepers_common.ml import (
    HttpMlApi,
    MlOAuthClient,
    OAuthTokenProvider,
    OutboundLimiter,
    TokenSet,
    ml_session,
)
from peepers_common.namespaces import Namespace, connect_redis
from peepers_common.settings import MlLimit
from peepers_common.topic_admin import ensure_topics
from peepers_common.topics import PEEPERS_CATALOG, TOPICS, TopicSpec
from peepers_sandbox.client import SandboxAdmin
from peepers_sandbox.config import DEMO_APP_ID, DEMO_CLIENT_SECRET
from tests.support import unique

WINDOW_S = 60


def minimum_s(requests: int, per_minute: int) -> float:
    """The time N requests a minute allow for `requests`, spread evenly: requests / N min."""
    return requests / per_minute * WINDOW_S


@dataclass
class SyncRun:
    name: str
    seconds: float
    state: SyncState
    counters: dict[str, dict[str, Any]]


async def _sync(
    name: str,
    sandbox_url: str,
    seller: int,
    admin: SandboxAdmin,
    events_topic: str,
    app_limit: MlLimit | None,
) -> SyncRun:
    settings = Settings()
    ml = settings.ml.model_copy(
        update={
            "base_url": sandbox_url,
            "app_id": DEMO_APP_ID,
            "client_secret": SecretStr(DEMO_CLIENT_SECRET),
            "app_limit": app_limit,
        }
    )
    scope = unique("bench")
    namespace = Namespace("catalog", scope=scope)
    redis = connect_redis(settings.redis)
    try:
        async with (
            ml_session(ml) as session,
            AIOKafkaEventPublisher(kafka_settings()) as publisher,
        ):
            tokens = OAuthTokenProvider(MlOAuthClient(session, ml))
            tokens.add(seller, TokenSet.model_validate(await admin.mint_token(seller)))
            catalog = Catalog(
                ml=HttpMlApi(session, ml, tokens, OutboundLimiter(redis, ml, scope=scope)),
                store=RedisItemStore(redis, namespace),
                publisher=publisher,
                events_topic=events_topic,
            )
            await admin.reset_rate_limit_counters()
            start = time.perf_counter()
            shown = [start]

            def progress(state: SyncState) -> None:
                now = time.perf_counter()
                if now - shown[0] >= 5:
                    shown[0] = now
                    done = state.total if state.phase == "scanning" else state.next_index
                    log(f"  {name}: {state.phase} {done:,}/{state.total:,} at {now - start:.0f} s")

            state = await asyncio.wait_for(
                full_sync(
                    seller,
                    catalog,
                    RedisSyncCheckpoints(redis, namespace),
                    options=sync_options(settings),
                    progress=progress,
                ),
                timeout=900,
            )
            seconds = time.perf_counter() - start
            counters = {c["family"]: c for c in await admin.rate_limit_counters()}
    finally:
        await redis.aclose()
        await cleanup_scope(scope)
    return SyncRun(name, seconds, state, counters)


async def main(items: int, per_minute: int) -> None:
    kafka = kafka_settings()
    prefix = f"{unique('bench')}."
    spec = TOPICS[PEEPERS_CATALOG]
    events_topic = prefix + PEEPERS_CATALOG
    await ensure_topics(
        kafka, [TopicSpec(events_topic, spec.partitions, spec.description, spec.config)]
    )
    chunk = Settings().sync.chunk
    scans, multigets = scan_requests(items), multiget_requests(items, chunk)
    requests = scans + multigets
    best = minimum_s(requests, per_minute)
    log(
        f"{items:,} items: the sync needs {scans} scan pages + {multigets} multigets "
        f"= {requests} requests; at {per_minute}/min the minimum is {best:.1f} s"
    )
    if requests <= per_minute:
        log("warning: every request fits in the limit's first window; choose a smaller N")
    with tempfile.TemporaryDirectory() as tmp, sandbox_process(Path(tmp), items) as sandbox:
        async with aiohttp.ClientSession() as http:
            admin = SandboxAdmin(sandbox.url, http)
            log("baseline: full sync with no outbound limit")
            baseline = await _sync(
                "baseline", sandbox.url, sandbox.seller, admin, events_topic, None
            )
            log(f"baseline done in {baseline.seconds:.1f} s")
            await admin.set_rate_limits([{"family": "*", "per_minute": per_minute}])
            log(f"limited: full sync at {per_minute} requests/min (client and sandbox)")
            limited = await _sync(
                "limited",
                sandbox.url,
                sandbox.seller,
                admin,
                events_topic,
                MlLimit(amount=per_minute, per_s=WINDOW_S),
            )
            log(f"limited done in {limited.seconds:.1f} s")

    print()
    print(
        "| run | items | requests at the sandbox | 429s | time | req/s | items/s "
        "| minimum the limit allows | actual / minimum |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for run, bound in ((baseline, None), (limited, best)):
        seen = sum(c["total"] for f, c in run.counters.items() if f in ("items", "items_search"))
        refused = sum(c["limited"] for c in run.counters.values())
        label = run.name if bound is None else f"{run.name}, {per_minute}/min"
        ratio = "—" if bound is None else f"**{run.seconds / bound:.3f}**"
        minimum = "—" if bound is None else f"{bound:.1f} s"
        print(
            f"| {label} | {run.state.total:,} | {seen} | {refused} | {run.seconds:.1f} s "
            f"| {seen / run.seconds:.1f} | {run.state.total / run.seconds:,.0f} | {minimum} "
            f"| {ratio} |"
        )
    print()
    print(f"requests the sync must make: {requests} ({scans} scan pages + {multigets} multigets)")
    print(f"outcomes (limited run): {limited.state.counts}")
    verdict = "met" if limited.seconds <= 1.2 * best else "NOT met"
    print(f"target actual/minimum <= 1.2: {verdict}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--per-minute", type=int, default=300, help="outbound limit N per minute")
    args = parser.parse_args()
    run_then_delete_topics(main(args.items, args.per_minute))
