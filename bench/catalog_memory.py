"""Peak memory of the catalog worker during a full sync of a 100,000-item seller.

Starts the real worker (``python -m peepers_catalog worker``) on scratch topics and a
scratch Redis scope, lets it settle, reads its resident set (the baseline: the same
process idle after start-up), then publishes ``seller.connected`` so the worker runs the
full sync as in production, and samples its RSS until the sync's checkpoint says done.
The peak is the kernel's high-water mark (``VmHWM`` in ``/proc/<pid>/status``), so no
sample can miss it; the largest 100 ms sample is printed beside it. Target: < 400 MB.

The sandbox (one seller with ``--items`` items) is its own process, so its memory is not
counted; tokens come from a stand-in broker in this process (see bench.catalog_support).
The worker's outbound limit is off (``CATALOG_ML__APP_LIMIT=null``): memory, not the
limit, is measured.

    uv run python -m bench.catalog_memory [--items 100000] [--idle-s 10]

Needs the stack (``scripts/stack up``) with ``.stack/env`` sourced.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.catalog_support import (
    cleanup_scope,
    connect_seller,
    kafka_settings,
    log,
    memory_kib,
    run_then_delete_topics,
    sampled_peak,
    sandbox_process,
    sync_state,
    token_broker,
    wait_ready,
    worker_run,
)
from peepers_sandbox.client import SandboxAdmin
from tests.integration.catalog.worker import WorkerRun, catalog_topics, worker_process

TARGET_MB = 400


def mib(kib: int) -> str:
    return f"{kib / 1024:,.1f} MiB ({kib * 1024 / 1e6:,.1f} MB)"


async def main(items: int, idle_s: float) -> None:
    prefix = await catalog_topics(kafka_settings())
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        log(f"starting the sandbox with {items:,} items (its own process)")
        with sandbox_process(workdir, items) as sandbox:
            async with (
                aiohttp.ClientSession() as http,
                token_broker(SandboxAdmin(sandbox.url, http)) as broker_url,
            ):
                run = worker_run(
                    prefix,
                    sandbox.url,
                    broker_url,
                    workdir,
                    CATALOG_ML__APP_LIMIT="null",
                    CATALOG_ML__CALL_BUDGET_S="60",
                )
                try:
                    with worker_process(run) as process:
                        await wait_ready(run, process, timeout_s=60)
                        log(f"worker ready (pid {process.pid}); idle for {idle_s:g} s")
                        await asyncio.sleep(idle_s)
                        idle_rss, startup_hwm = memory_kib(process.pid)
                        log(f"idle: RSS {mib(idle_rss)}")
                        stop = asyncio.Event()
                        sampler = asyncio.create_task(sampled_peak(process.pid, stop))
                        start = time.perf_counter()
                        await connect_seller(run, sandbox.seller)
                        seconds = await _wait_synced(run, sandbox.seller, process.pid, start)
                        stop.set()
                        sampled = await sampler
                        after_rss, peak = memory_kib(process.pid)
                        state = await sync_state(run, sandbox.seller)
                        if process.poll() is not None:
                            msg = f"the worker died:\n{run.log_tail()}"
                            raise SystemExit(msg)
                finally:
                    log(f"cleaned up {await cleanup_scope(run.scope):,} keys")

    print()
    print(f"| catalog worker, {items:,}-item sync | RSS |")
    print("|---|---|")
    print(f"| idle after start-up (baseline) | {mib(idle_rss)} |")
    print(f"| peak during the sync (VmHWM) | **{mib(peak)}** |")
    print(f"| largest 100 ms sample | {mib(sampled)} |")
    print(f"| after the sync | {mib(after_rss)} |")
    print()
    print(f"peak at start-up, before the sync: {mib(startup_hwm)}")
    counts = state.counts if state is not None else {}
    print(f"sync: {seconds:.1f} s, {items / seconds:,.0f} items/s; outcomes {counts}")
    verdict = "met" if peak * 1024 < TARGET_MB * 1e6 else "NOT met"
    print(f"target peak < {TARGET_MB} MB: {verdict} (peak - idle = {mib(peak - idle_rss)})")


async def _wait_synced(run: WorkerRun, seller: int, pid: int, start: float) -> float:
    shown = start
    while True:
        await asyncio.sleep(1.0)
        state = await sync_state(run, seller)
        now = time.perf_counter()
        if state is not None and state.phase == "done":
            return now - start
        if now - shown >= 5:
            shown = now
            phase = state.phase if state is not None else "waiting"
            done = state.next_index if state is not None else 0
            total = state.total if state is not None else 0
            log(
                f"  {phase} {done:,}/{total:,} at {now - start:.0f} s, "
                f"RSS {mib(memory_kib(pid)[0])}"
            )
        if now - start > 1800:
            msg = f"no finished sync after 30 min:\n{run.log_tail()}"
            raise SystemExit(msg)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument(
        "--idle-s", type=float, default=10.0, help="settle time before the baseline"
    )
    args = parser.parse_args()
    run_then_delete_topics(main(args.items, args.idle_s))
