"""The real limiter on a virtual clock: a sync keeps the pace its bulk budget allows, and
live requests do not wait behind it (bench.limiter_pace; seconds of real time)."""

from __future__ import annotations

import asyncio

from bench.limiter_pace import Result, Scenario, measure
from peepers_common.ml.ratelimit import bulk_rate
from peepers_common.settings import MlLimit

LIMIT = MlLimit(amount=2400, per_s=60)


async def _measured(others_per_min: float) -> Result:
    """On a thread: the virtual-time loop must not be the test's own."""
    return await asyncio.to_thread(measure, _scenario(others_per_min))


def _scenario(others_per_min: float) -> Scenario:
    return Scenario(
        limit_per_min=LIMIT.amount,
        others_per_min=others_per_min,
        processes=4,
        requests=3000,
        concurrency=20,
        latency_s=0.05,
        seed=7,
    )


async def test_a_sync_beside_steady_webhooks_keeps_its_bulk_pace_and_they_never_wait() -> None:
    result = await _measured(1500)
    bound_s = 3000 / bulk_rate(LIMIT, result.others_per_min() / 60)
    assert result.others_per_min() > 1400  # the webhooks were served at their rate
    assert result.sync_s <= 1.2 * bound_s, (result.sync_s, bound_s)
    assert result.live_wait_ms(0.99) < 100


async def test_a_sync_alone_takes_the_whole_bulk_budget() -> None:
    result = await _measured(0)
    # The first window's budget is there at once; the rest comes as leases slide out.
    assert result.sync_s <= 3000 / bulk_rate(LIMIT, 0), result.sync_s
    assert result.others == 0
