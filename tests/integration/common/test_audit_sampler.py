"""`BudgetedSampler` on the real Redis: its pace, one replica at a time, paused while told."""

from __future__ import annotations

import asyncio
import time
from contextlib import suppress

import redis.asyncio as aioredis

from peepers_common.audit import BudgetedSampler, Sample
from peepers_common.namespaces import Namespace
from tests.support import unique


async def run_for(samplers: list[BudgetedSampler], seconds: float) -> None:
    tasks = [asyncio.create_task(s.run()) for s in samplers]
    await asyncio.sleep(seconds)
    for task in tasks:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


async def test_replicas_share_one_budget_spent_by_one_of_them(redis_admin: aioredis.Redis) -> None:
    namespace = Namespace("catalog", scope=unique("audit"))
    steps: list[tuple[int, float]] = []

    def step(replica: int) -> Sample:
        async def sample() -> int:
            steps.append((replica, time.monotonic()))
            return 1  # one ML call

        return sample

    samplers = [
        BudgetedSampler(redis_admin, namespace, step(n), calls_per_s=10.0) for n in range(3)
    ]
    await run_for(samplers, 1.5)
    assert 8 <= len(steps) <= 16  # 10 calls a second, never three replicas' worth
    assert len({replica for replica, _ in steps}) == 1


async def test_a_paused_sampler_spends_nothing(redis_admin: aioredis.Redis) -> None:
    namespace = Namespace("catalog", scope=unique("audit"))
    calls: list[int] = []

    async def sample() -> int:
        calls.append(1)
        return 1

    sampler = BudgetedSampler(redis_admin, namespace, sample, calls_per_s=50.0, paused=lambda: True)
    await run_for([sampler], 0.5)
    assert calls == []
