"""The mailer's consumer loop across a rebalance, on the real Kafka broker."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import pytest
from aiokafka import AIOKafkaProducer

from peepers_common.consuming import InboundRecord
from peepers_common.kafka import caught_up
from peepers_common.settings import KafkaSettings
from peepers_orders.mailer import GroupLoop
from tests.support import create_topic, unique, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

PER_PARTITION = 20


async def test_a_partition_taken_away_mid_batch_is_left_to_its_new_owner(
    kafka: KafkaSettings, caplog: pytest.LogCaptureFixture
) -> None:
    # The first process holds its first record while a second one joins the group: the
    # rebalance takes one of its two partitions away in the middle of its batch. The rest
    # of that batch is the new owner's; the old one neither handles it nor restarts (one
    # more rebalance for the whole group) when its commit is refused.
    topic = await create_topic(kafka, partitions=2)
    group = unique("mailer")
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    await producer.start()
    try:
        for partition in (0, 1):
            for n in range(PER_PARTITION):
                await producer.send_and_wait(
                    topic, f"{partition}:{n}".encode(), partition=partition
                )
    finally:
        await producer.stop()

    handled: dict[str, Counter[tuple[int, int]]] = {"old": Counter(), "new": Counter()}
    first = asyncio.Event()
    go = asyncio.Event()

    async def old(record: InboundRecord) -> None:
        first.set()
        await go.wait()
        handled["old"][(record.partition, record.offset)] += 1

    async def new(record: InboundRecord) -> None:
        handled["new"][(record.partition, record.offset)] += 1

    caplog.set_level(logging.WARNING, logger="peepers_orders.mailer")
    tasks = [asyncio.create_task(GroupLoop(kafka, topic=topic, group=group, handle=old).run())]
    try:
        await asyncio.wait_for(first.wait(), timeout=30)
        tasks.append(
            asyncio.create_task(GroupLoop(kafka, topic=topic, group=group, handle=new).run())
        )

        async def taken_over() -> bool:  # the new owner drained the partition it took
            return len(handled["new"]) >= PER_PARTITION

        await wait_until(taken_over, timeout_s=45)
        go.set()

        async def all_committed() -> bool:
            return await caught_up(kafka, group, [topic])

        await wait_until(all_committed, timeout_s=30)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    both = handled["old"].keys() & handled["new"].keys()
    assert len(both) <= 1  # at most the record in hand when the partition went
    assert len(handled["old"].keys() | handled["new"].keys()) == 2 * PER_PARTITION
    assert not [r for r in caplog.records if "restarting" in r.getMessage()]
