"""Fairness (issue 18 §5): does a huge seller's full sync slow the other sellers' webhooks?

Real processes on loopback: the sandbox (``peepers_proof.sandbox_host``: one huge seller
with ``--huge-items`` items and ``--small-sellers`` sellers of ``--small-items`` each, no
notifier), ingest (``python -m peepers_ingest``, acks=all) and the catalog worker
(``python -m peepers_catalog worker``, ML's budget ``--ml-requests-per-minute``), on
scratch topics and a scratch Redis scope; tokens from bench.catalog_support's stand-in
broker. The small sellers are synced first, so their items are cached.

Probes, open loop at ``--rate`` a second, round robin over the small sellers' items: change
the item's price at the sandbox (price = 100000 + sequence number), POST its
``items_prices`` webhook to ingest at t0, and read the worker's ``item.price_changed``
from ``<prefix>peepers.catalog.v1`` (t1: when this process reads it, after the cache
write and the event's ack). Two phases in one run, the same rate and items:

1. **without the sync**: ``--baseline-s`` seconds;
2. **during the sync**: the huge seller's ``seller.connected`` starts its full sync, and
   the probes run until the sync is done.

It prints p50/p99 of both phases and the p99 ratio (target <= 2), and the sync's time
against its bound at the budget left to it (`peepers_proof.fairness.sync_bound_s`: scan
pages and multigets spread evenly over what bulk leases may take; target <= 1.2x,
meaningful when the limit binds).

    uv run python -m bench.fairness [--huge-items 20000] [--small-sellers 3] [--rate 20]

``--sync-process`` splits the worker by role (``CATALOG_ROLE``): one ``items`` process
takes the webhooks, a ``sync`` process of its own the seller events and their syncs;
``--sync-nice N`` lowers that process's CPU priority (as a smaller CPU share for a sync
pod would).
``--worker-env KEY=VALUE`` (repeatable) sets the workers' environment, e.g.
``CATALOG_SYNC__APPLY_CONCURRENCY=5``; ``--profile FILE`` py-spies the (items) worker
during the sync. Needs the stack (``scripts/stack up``) with ``.stack/env`` sourced.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

import aiohttp
from aiokafka import AIOKafkaConsumer

from bench.catalog_latency import (
    PRICE_BASE,
    post_webhook,
    py_spy,
    seq_of,
    webhook,
    worker_setting,
)
from bench.catalog_support import (
    cleanup_scope,
    connect_seller,
    kafka_settings,
    log,
    percentile,
    run_then_delete_topics,
    seller_item_ids,
    sync_state,
    token_broker,
    wait_ready,
    worker_run,
)
from bench.ingest import PATH, start_ingest, wait_port
from peepers_catalog.settings import Settings as CatalogSettings
from peepers_common.topics import PEEPERS_CATALOG
from peepers_proof.fairness import sync_bound_s
from peepers_sandbox.client import SandboxAdmin
from peepers_sandbox.config import DEMO_SELLER_ID, MarketplaceConfig, NotifierConfig, SandboxConfig
from tests.integration.catalog.worker import WorkerRun, catalog_topics, worker_process
from tests.integration.ingest.support import free_port
from tests.support import unique, wait_until

TARGET_P99_RATIO: Final = 2.0
TARGET_SYNC_RATIO: Final = 1.2
SYNC_TIMEOUT_S: Final = 900.0


@dataclass
class Probes:
    """Sent and read times of each probe (by sequence number), and its phase."""

    sent_at: dict[int, float] = field(default_factory=dict)
    read_at: dict[int, float] = field(default_factory=dict)
    phase: dict[int, str] = field(default_factory=dict)
    rejected: int = 0
    # Beside each probe, a plain GET /items/{id} at the sandbox: what ML's side costs.
    fetch_ms: dict[str, list[float]] = field(default_factory=dict)

    def latencies_ms(self, phase: str, pool: int) -> list[float]:
        """t1 - t0 of the phase's probes; a probe overtaken by a later one of the same item
        (every `pool`-th sequence number) ends when that later price was read."""
        found = []
        last = max(self.sent_at, default=0)
        for seq, t0 in self.sent_at.items():
            if self.phase[seq] != phase:
                continue
            ends = (self.read_at[s] for s in range(seq, last + 1, pool) if s in self.read_at)
            end = next(ends, None)
            if end is not None:
                found.append((end - t0) * 1000)
        return found

    def unread(self) -> int:
        return sum(1 for seq in self.sent_at if seq not in self.read_at)


def round_robin(pool: list[tuple[int, str]], sellers: list[int]) -> list[tuple[int, str]]:
    """The (seller, item) pairs reordered so that consecutive probes change sellers."""
    by_seller = [[pair for pair in pool if pair[0] == seller] for seller in sellers]
    return [pair for row in zip(*by_seller, strict=False) for pair in row]


def p99_ratio(during: list[float], without: list[float]) -> float:
    """p99 during the sync over p99 without it (NaN when either phase has no probe)."""
    return percentile(during, 0.99) / percentile(without, 0.99)


def sandbox_config(small_sellers: int, small_items: int, port: int) -> SandboxConfig:
    """One seller (the huge one, grown by the host) and the small ones; items only."""
    config = SandboxConfig(
        marketplace=MarketplaceConfig(
            sellers=1 + small_sellers,
            items_per_seller=small_items,
            orders_per_seller=0,
            questions_per_seller=0,
            claims_per_seller=0,
        ),
        notifier=NotifierConfig(enabled=False),
        port=port,
    )
    config.rate_limits.rules = []  # the worker's own limiter is the one measured
    return config


@contextmanager
def huge_sandbox(
    workdir: Path, small_sellers: int, small_items: int, huge_items: int
) -> Iterator[str]:
    """The sandbox host with the huge seller grown in-process; yields its URL."""
    port, state_port = free_port(), free_port()
    path = workdir / "sandbox.json"
    path.write_text(sandbox_config(small_sellers, small_items, port).model_dump_json())
    path_arg = ["--config", str(path), "--state-port", str(state_port)]
    huge = ["--huge-seller", str(DEMO_SELLER_ID), "--huge-items", str(huge_items)]
    with (workdir / "sandbox.log").open("ab") as out:
        process = subprocess.Popen(  # noqa: S603 - our own module
            [sys.executable, "-m", "peepers_proof.sandbox_host", *path_arg, *huge],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_port(port, timeout_s=60 + huge_items / 2000)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait()


async def collect(consumer: AIOKafkaConsumer, probes: Probes, stop: asyncio.Event) -> None:
    while not stop.is_set():
        batches = await consumer.getmany(timeout_ms=50)
        now = time.time()
        for records in batches.values():
            for record in records:
                event = json.loads(record.value or b"{}")
                if event.get("type") != "item.price_changed":
                    continue
                seq = seq_of(event["new_price"], 1_000_000)
                if seq is not None and seq not in probes.read_at:
                    probes.read_at[seq] = now


async def drive(
    http: aiohttp.ClientSession,
    admin: SandboxAdmin,
    ingest_url: str,
    pool: list[tuple[int, str]],
    tokens: dict[int, str],
    probes: Probes,
    phase: str,
    rate: float,
    until: asyncio.Event,
) -> None:
    """Probe on schedule until `until` is set, round robin over `pool`."""
    loop = asyncio.get_running_loop()
    run_id = unique("fair")
    tasks: set[asyncio.Task[None]] = set()
    start = loop.time()
    first = len(probes.sent_at) + probes.rejected

    async def fetch(seller: int, item_id: str) -> None:
        started = time.perf_counter()
        headers = {"Authorization": f"Bearer {tokens[seller]}"}
        async with http.get(f"{admin.base_url}/items/{item_id}", headers=headers) as response:
            await response.read()
        probes.fetch_ms.setdefault(phase, []).append((time.perf_counter() - started) * 1000)

    async def one(seq: int) -> None:
        seller, item_id = pool[seq % len(pool)]
        await admin.event("price_change", item_id=item_id, price=PRICE_BASE + seq)
        await fetch(seller, item_id)
        t0 = time.time()
        if not await post_webhook(http, ingest_url, webhook(run_id, seq, seller, item_id)):
            probes.rejected += 1
            return
        probes.phase[seq] = phase
        probes.sent_at[seq] = t0

    n = 0
    while not until.is_set():
        delay = start + n / rate - loop.time()
        if delay > 0:
            with suppress(TimeoutError):
                await asyncio.wait_for(until.wait(), delay)
            continue
        task = asyncio.create_task(one(first + n))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        n += 1
    if tasks:
        await asyncio.wait(tasks)


async def _synced(run: WorkerRun, seller: int, timeout_s: float) -> float:
    """Wait for the seller's sync to be done; its duration (the worker's clock)."""
    deadline = time.monotonic() + timeout_s
    while True:
        state = await sync_state(run, seller)
        if state is not None and state.phase == "done" and state.finished_at is not None:
            return state.finished_at - state.started_at
        if time.monotonic() > deadline:
            msg = f"the sync of {seller} did not finish:\n{run.log_tail()}"
            raise SystemExit(msg)
        await asyncio.sleep(0.2)


@dataclass(frozen=True)
class Options:
    huge_items: int
    small_sellers: int
    small_items: int
    rate: float
    baseline_s: float
    per_minute: int
    worker_env: dict[str, str]
    profile: Path | None
    sync_process: bool = False
    sync_nice: int = 0


async def main(opts: Options) -> None:
    prefix = await catalog_topics(kafka_settings())
    small = [DEMO_SELLER_ID + 1 + i for i in range(opts.small_sellers)]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        log(f"starting the sandbox (huge seller {opts.huge_items:,} items), ingest, the worker")
        with huge_sandbox(workdir, opts.small_sellers, opts.small_items, opts.huge_items) as url:
            ingest_port = free_port()
            ingest = start_ingest(ingest_port, prefix, workdir / "spool", workdir / "ingest.log")
            async with (
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as http,
                token_broker(SandboxAdmin(url, http)) as broker_url,
            ):
                admin = SandboxAdmin(url, http)
                limit = {"amount": opts.per_minute, "per_s": 60}
                run = worker_run(
                    prefix,
                    url,
                    broker_url,
                    workdir,
                    CATALOG_ML__APP_LIMIT=json.dumps(limit),
                    **opts.worker_env,
                )
                runs = [run]
                if opts.sync_process:
                    run.extra_env["CATALOG_ROLE"] = "items"
                    env = {**run.extra_env, "CATALOG_ROLE": "sync"}
                    sync_log = workdir / "catalog-sync.log"
                    runs.append(replace(run, port=free_port(), log=sync_log, extra_env=env))
                try:
                    with ExitStack() as stack:
                        processes = [stack.enter_context(worker_process(r)) for r in runs]
                        if opts.sync_process and opts.sync_nice:
                            os.setpriority(os.PRIO_PROCESS, processes[1].pid, opts.sync_nice)
                        for r, started in zip(runs, processes, strict=True):
                            await wait_ready(r, started, timeout_s=60)
                        process = processes[0]
                        pool, tokens = await _small_sellers_synced(http, admin, url, run, small)
                        probes, sync_s = await _phases(
                            http, admin, run, process, ingest_port, (pool, tokens), opts
                        )
                        for r, started in zip(runs, processes, strict=True):
                            if started.poll() is not None:
                                msg = f"a worker died:\n{r.log_tail()}"
                                raise SystemExit(msg)
                finally:
                    ingest.terminate()
                    ingest.wait()
                    log(f"cleaned up {await cleanup_scope(run.scope):,} keys")
    _report(opts, probes, sync_s, len(pool))


async def _small_sellers_synced(
    http: aiohttp.ClientSession, admin: SandboxAdmin, url: str, run: WorkerRun, sellers: list[int]
) -> tuple[list[tuple[int, str]], dict[int, str]]:
    """The small sellers' (seller, item) pairs once synced, round robin; their tokens."""
    for seller in sellers:
        await connect_seller(run, seller)
    for seller in sellers:
        await _synced(run, seller, timeout_s=120)
    pool: list[tuple[int, str]] = []
    tokens: dict[int, str] = {}
    for seller in sellers:
        tokens[seller] = token = (await admin.mint_token(seller))["access_token"]
        pool += [(seller, item) for item in await seller_item_ids(http, url, seller, token)]
    log(f"small sellers synced: {len(pool):,} items")
    return round_robin(pool, sellers), tokens


async def _phases(
    http: aiohttp.ClientSession,
    admin: SandboxAdmin,
    run: WorkerRun,
    process: subprocess.Popen[bytes],
    ingest_port: int,
    targets: tuple[list[tuple[int, str]], dict[int, str]],
    opts: Options,
) -> tuple[Probes, float]:
    probes = Probes()
    consumer = AIOKafkaConsumer(
        run.topic(PEEPERS_CATALOG),
        bootstrap_servers=run.kafka.bootstrap_servers,
        auto_offset_reset="latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    while not consumer.assignment():
        await consumer.getmany(timeout_ms=100)
    stop = asyncio.Event()
    collector = asyncio.create_task(collect(consumer, probes, stop))
    ingest_url = f"http://127.0.0.1:{ingest_port}{PATH}"
    try:
        log(f"phase 1: probes at {opts.rate:g}/s for {opts.baseline_s:g} s, no sync")
        baseline_over = asyncio.Event()
        asyncio.get_running_loop().call_later(opts.baseline_s, baseline_over.set)
        await drive(http, admin, ingest_url, *targets, probes, "without", opts.rate, baseline_over)
        log(f"phase 2: the huge seller's sync ({opts.huge_items:,} items), probes until done")
        sync_done = asyncio.Event()
        await connect_seller(run, DEMO_SELLER_ID)
        prober = asyncio.create_task(
            drive(http, admin, ingest_url, *targets, probes, "during", opts.rate, sync_done)
        )
        with py_spy(process.pid, opts.profile):
            sync_s = await _synced(run, DEMO_SELLER_ID, SYNC_TIMEOUT_S)
        sync_done.set()
        await prober

        async def all_read() -> bool:
            return not probes.unread()

        # The last probes' events; one never read is reported, not waited for forever.
        with suppress(AssertionError):
            await wait_until(all_read, timeout_s=30, every_s=0.1)
    finally:
        stop.set()
        await collector
        await consumer.stop()
    return probes, sync_s


def _report(opts: Options, probes: Probes, sync_s: float, pool: int) -> None:
    without, during = probes.latencies_ms("without", pool), probes.latencies_ms("during", pool)
    print()
    print("| webhook -> event read, small sellers | probes | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|")
    rows = [
        ("without the sync", without),
        ("during the huge sync", during),
        ("sandbox GET /items/{id} alone, without the sync", probes.fetch_ms.get("without", [])),
        ("sandbox GET /items/{id} alone, during it", probes.fetch_ms.get("during", [])),
    ]
    for name, values in rows:
        cells = " | ".join(f"{percentile(values, q):,.0f}" for q in (0.5, 0.99))
        print(f"| {name} | {len(values):,} | {cells} | {max(values, default=0):,.0f} |")
    print()
    ratio = p99_ratio(during, without)
    verdict = "met" if ratio <= TARGET_P99_RATIO else "NOT met"
    print(f"p99 ratio during/without: {ratio:.1f} (target <= {TARGET_P99_RATIO:g}: {verdict})")
    print(f"probes refused by ingest: {probes.rejected}; never read: {probes.unread()}")
    chunk = CatalogSettings().sync.chunk
    chunk = int(opts.worker_env.get("CATALOG_SYNC__CHUNK", chunk))
    bound = sync_bound_s(opts.huge_items, chunk, opts.per_minute)
    print(
        f"huge sync: {opts.huge_items:,} items in {sync_s:.1f} s; bound at the budget left "
        f"to it ({opts.per_minute:,}/min less the webhooks' reserve) {bound:.1f} s: "
        f"{sync_s / bound:.2f}x "
        f"(target <= {TARGET_SYNC_RATIO:g}x when the limit binds)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--huge-items", type=int, default=20_000, help="the huge seller's items")
    parser.add_argument("--small-sellers", type=int, default=3, help="the probed sellers")
    parser.add_argument("--small-items", type=int, default=50, help="items of each small seller")
    parser.add_argument("--rate", type=float, default=20.0, help="probes a second")
    parser.add_argument("--baseline-s", type=float, default=20.0, help="seconds without the sync")
    parser.add_argument(
        "--ml-requests-per-minute", type=int, default=30_000, help="the worker's ML budget"
    )
    parser.add_argument("--worker-env", type=worker_setting, action="append", default=[])
    parser.add_argument("--profile", type=Path, help="py-spy the worker during the sync")
    parser.add_argument(
        "--sync-process", action="store_true", help="run the sync in a process of its own"
    )
    parser.add_argument("--sync-nice", type=int, default=0, help="that process's niceness")
    args = parser.parse_args()
    run_then_delete_topics(
        main(
            Options(
                huge_items=args.huge_items,
                small_sellers=args.small_sellers,
                small_items=args.small_items,
                rate=args.rate,
                baseline_s=args.baseline_s,
                per_minute=args.ml_requests_per_minute,
                worker_env=dict(args.worker_env),
                profile=args.profile,
                sync_process=args.sync_process,
                sync_nice=args.sync_nice,
            )
        )
    )
