"""How fast a bulk sync goes against the bound of the budget others leave it (issue 18 §5).

The real `OutboundLimiter` and the real lease rules (`MemoryLeaseBudget`, the rules of
``leases.lua``) on a virtual clock (looptime: the event loop's time jumps over idle
waits), so ten minutes of a budget at ML's scale take seconds. ``--processes`` live
processes ask at ``--others`` requests a minute in total (Poisson arrivals), and one bulk
process runs a sync: ``--concurrency`` requests in flight, each ``--latency-ms`` at ML.
The sync's pace is measured after ``--warmup-s`` (the budget's first window fills), and
set against its bound: the budget less what the others took, over the same span.

    uv run python -m bench.limiter_pace --others 1839 --processes 6 --requests 6511

A baseline row, the sync alone, runs beside the asked one. The bound is printed twice:
nominal (the budget less the others' use) and bulk (`bulk_rate`: what the limiter's
rules leave a sync: the budget counted per window plus margin and lease ttl, less the
webhooks' reserve, less the others' use).
"""

from __future__ import annotations

import argparse
import asyncio
import random
from dataclasses import dataclass, field
from typing import cast

import looptime
import redis.asyncio as aioredis

from bench.catalog_support import percentile
from peepers_common.ml.leases import MemoryLeaseBudget
from peepers_common.ml.ratelimit import OutboundLimiter, bulk_lane, bulk_rate
from peepers_common.settings import MlApiSettings, MlLimit

FAMILY = "items"
# The others ask alone this long before the sync starts.
WARMUP_S = 70.0


@dataclass(frozen=True)
class Scenario:
    limit_per_min: int
    others_per_min: float
    processes: int
    requests: int
    concurrency: int
    latency_s: float
    seed: int


@dataclass
class Result:
    sync_s: float  # the sync's start to its last request's permit
    others: int  # the others' permits meanwhile
    live_waits: list[float] = field(default_factory=list)  # seconds, each live request

    def others_per_min(self) -> float:
        return self.others / self.sync_s * 60

    def live_wait_ms(self, q: float) -> float:
        """The ``q`` quantile of the live requests' waits (0 when none came)."""
        return percentile(self.live_waits, q) * 1000 if self.live_waits else 0.0


async def _run(scenario: Scenario) -> Result:
    loop = asyncio.get_running_loop()
    budget = MemoryLeaseBudget(clock=loop.time)
    settings = MlApiSettings(
        app_limit=MlLimit(amount=scenario.limit_per_min, per_s=60), family_limits={}
    )
    no_redis = cast(aioredis.Redis, None)  # the memory budget replaces Redis

    def limiter() -> OutboundLimiter:
        return OutboundLimiter(no_redis, settings, scope="bench", budget=budget, clock=loop.time)

    rng = random.Random(scenario.seed)
    result = Result(0.0, 0)
    pending: set[asyncio.Task[None]] = set()
    todo = scenario.requests

    async def live_request(process: OutboundLimiter) -> None:
        result.live_waits.append(await process.acquire(FAMILY))
        result.others += 1

    async def other(process: OutboundLimiter, per_s: float) -> None:
        # Open loop: requests arrive whether or not earlier ones got their permits, as
        # webhooks do.
        while True:
            await asyncio.sleep(rng.expovariate(per_s))
            task = asyncio.create_task(live_request(process))
            pending.add(task)
            task.add_done_callback(pending.discard)

    async def sync_worker(process: OutboundLimiter) -> None:
        nonlocal todo
        while todo > 0:
            todo -= 1
            await process.acquire(FAMILY)
            if todo <= 0:
                result.sync_s = loop.time() - started
            await asyncio.sleep(scenario.latency_s)

    limiters = [limiter() for _ in range(scenario.processes + 1)]
    others = []
    if scenario.others_per_min > 0:
        per_s = scenario.others_per_min / 60 / scenario.processes
        others = [asyncio.create_task(other(p, per_s)) for p in limiters[1:]]
        await asyncio.sleep(WARMUP_S)  # the others' demand settles in the budget first
    result.others, result.live_waits = 0, []
    started = loop.time()
    with bulk_lane():  # tasks made here run in the bulk lane (a context variable)
        workers = [
            asyncio.create_task(sync_worker(limiters[0])) for _ in range(scenario.concurrency)
        ]
    await asyncio.gather(*workers)
    for task in [*others, *pending]:
        task.cancel()
    await asyncio.gather(*others, *pending, return_exceptions=True)
    for process in limiters:
        await process.aclose()
    return result


def measure(scenario: Scenario) -> Result:
    def virtual() -> asyncio.AbstractEventLoop:
        return looptime.new_event_loop(start=0.0, noop_cycles=1)

    with asyncio.Runner(loop_factory=virtual) as runner:
        return runner.run(_run(scenario))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=2400, help="the budget, per minute")
    parser.add_argument("--others", type=float, default=1839, help="others' requests/min")
    parser.add_argument("--processes", type=int, default=6, help="the others' processes")
    parser.add_argument("--requests", type=int, default=6511, help="the sync's requests")
    parser.add_argument("--concurrency", type=int, default=20, help="the sync's in flight")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="one ML request")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(
        f"budget {args.limit}/min; a sync of {args.requests} requests, {args.concurrency} "
        f"in flight, {args.latency_ms:.0f} ms each; the others in {args.processes} processes"
    )
    print(
        f"{'run':<26} {'others/min':>10} {'sync s':>7} {'bound s':>16} {'x bound':>12}"
        f" {'live wait p50/p99 ms':>21}"
    )
    print(f"{'':<26} {'':>10} {'':>7} {'nominal / bulk':>16} {'nominal/bulk':>12}")
    limit = MlLimit(amount=args.limit, per_s=60)
    for name, others in (("the sync alone (baseline)", 0.0), ("with the others", args.others)):
        result = measure(
            Scenario(
                limit_per_min=args.limit,
                others_per_min=others,
                processes=args.processes,
                requests=args.requests,
                concurrency=args.concurrency,
                latency_s=args.latency_ms / 1000,
                seed=args.seed,
            )
        )
        took = result.others_per_min()
        # Nominal: the budget less the others'; bulk: what the limiter's rules leave a
        # sync (its counted window and the webhooks' reserve: `bulk_rate`).
        nominal = args.requests / max(args.limit - took, 1e-9) * 60
        bulk = args.requests / max(bulk_rate(limit, took / 60), 1e-9)
        ratios = f"{result.sync_s / nominal:.2f} / {result.sync_s / bulk:.2f}"
        waits = f"{result.live_wait_ms(0.5):.0f} / {result.live_wait_ms(0.99):.0f}"
        print(
            f"{name:<26} {took:>10.0f} {result.sync_s:>7.0f} {nominal:>7.0f} / {bulk:<6.0f}"
            f" {ratios:>12} {waits:>21}"
        )


if __name__ == "__main__":
    main()
