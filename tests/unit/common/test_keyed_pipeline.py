"""The batch agents' engine: records overlap across keys, keep order within one, and are
acked in offset order per partition."""

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from peepers_common.consuming import Fate, InboundRecord, KeyedPipeline, RecordProcessor
from peepers_common.testing import InMemoryEventPublisher
from tests.support import unique


def record(offset: int, key: str, partition: int = 0) -> InboundRecord:
    return InboundRecord.from_kafka("items", partition, offset, key.encode(), b"{}", [])


def processor() -> RecordProcessor:
    return RecordProcessor(consumer=unique("consumer"), publisher=InMemoryEventPublisher())


class Gates:
    """A handler that holds each record until the test opens its gate."""

    def __init__(self) -> None:
        self.gates: dict[int, asyncio.Event] = {}
        self.started: list[int] = []

    def gate(self, offset: int) -> asyncio.Event:
        return self.gates.setdefault(offset, asyncio.Event())

    async def handler(self, record: InboundRecord) -> str:
        self.started.append(record.offset)
        await self.gate(record.offset).wait()
        return "ok"


def acker(acked: list[int], offset: int) -> Callable[[Fate], Awaitable[None]]:
    async def done(fate: Fate) -> None:
        assert fate is Fate.DONE
        acked.append(offset)

    return done


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_a_record_starts_without_waiting_for_a_slower_one_of_another_key() -> None:
    gates, acked = Gates(), list[int]()
    async with KeyedPipeline(processor(), gates.handler, in_flight=8) as pipeline:
        await pipeline.submit(record(0, "a"), acker(acked, 0))
        await pipeline.submit(record(1, "b"), acker(acked, 1))
        await settle()
        assert gates.started == [0, 1]
        gates.gate(1).set()
        await settle()
        # 1 is done, but 0 before it in the partition is not: nothing is acked yet.
        assert acked == []
        gates.gate(0).set()
    assert acked == [0, 1]


async def test_records_of_one_key_run_one_at_a_time_in_order() -> None:
    gates, acked = Gates(), list[int]()
    async with KeyedPipeline(processor(), gates.handler, in_flight=8) as pipeline:
        for offset in range(3):
            await pipeline.submit(record(offset, "a"), acker(acked, offset))
        await settle()
        assert gates.started == [0]
        gates.gate(0).set()
        await settle()
        assert gates.started == [0, 1]
        assert acked == [0]
        gates.gate(1).set()
        gates.gate(2).set()
    assert acked == [0, 1, 2]


async def test_each_partition_is_acked_in_its_own_order() -> None:
    gates, acked = Gates(), list[int]()
    async with KeyedPipeline(processor(), gates.handler, in_flight=8) as pipeline:
        await pipeline.submit(record(0, "a", partition=0), acker(acked, 0))
        await pipeline.submit(record(10, "b", partition=1), acker(acked, 10))
        gates.gate(10).set()
        await settle()
        # Partition 1 does not wait for partition 0.
        assert acked == [10]
        gates.gate(0).set()
    assert acked == [10, 0]


async def test_submit_waits_while_in_flight_records_fill_the_slots() -> None:
    gates = Gates()
    async with KeyedPipeline(processor(), gates.handler, in_flight=2) as pipeline:
        await pipeline.submit(record(0, "a"))
        await pipeline.submit(record(1, "b"))
        third = asyncio.create_task(pipeline.submit(record(2, "c")))
        await settle()
        assert not third.done()
        gates.gate(0).set()
        await third
        gates.gate(1).set()
        gates.gate(2).set()
    assert sorted(gates.started) == [0, 1, 2]


async def test_a_bug_in_the_pipeline_reaches_the_agent() -> None:
    """A failing handler is the processor's business (it parks or dead-letters); what
    escapes the processor (here a done callback) fails the agent, not silently."""

    async def fine(_record: InboundRecord) -> str:
        return "ok"

    async def broken(_fate: Fate) -> None:
        msg = "ack failed"
        raise RuntimeError(msg)

    pipeline = KeyedPipeline(processor(), fine, in_flight=4)
    await pipeline.submit(record(0, "a"), broken)
    with pytest.raises(RuntimeError, match="ack failed"):
        await pipeline.join()
