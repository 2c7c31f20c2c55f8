"""Webhook-driven ML calls go before the backfill's in one worker."""

import asyncio

from peepers_orders.priority import UrgentFirst


async def test_a_background_call_waits_while_an_urgent_one_is_in_flight() -> None:
    gate = UrgentFirst()
    order: list[str] = []
    release = asyncio.Event()

    async def urgent() -> None:
        async def call() -> None:
            order.append("urgent started")
            await release.wait()
            order.append("urgent done")

        await gate.run(call, urgent=True)

    async def background() -> None:
        async def call() -> None:
            order.append("background")

        await gate.run(call, urgent=False)

    first = asyncio.create_task(urgent())
    await asyncio.sleep(0)
    second = asyncio.create_task(background())
    await asyncio.sleep(0.01)
    assert order == ["urgent started"]
    release.set()
    await asyncio.gather(first, second)
    assert order == ["urgent started", "urgent done", "background"]


async def test_background_calls_run_at_once_when_nothing_is_urgent() -> None:
    gate = UrgentFirst()

    async def call() -> str:
        return "done"

    assert await asyncio.wait_for(gate.run(call, urgent=False), 1) == "done"
