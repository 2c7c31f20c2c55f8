"""The scale-out's yardstick: a plain aiokafka loop doing the catalog worker's fetches.

It reads the catalog's notification topics from their start (what one catalog worker
has just drained) in batches, as the kit does (`peepers_common.consuming.process_batch`:
keys concurrently, each key's records in order), and for each record only asks ML
(the sandbox, as slow as in the run) for the resource, with the seller's token from
auth's broker. No Faust, no retries, no Redis, no events: what it costs less than the
worker is what Faust and the kit cost.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from peepers_common.kafka import end_offsets
from peepers_common.ml.broker_tokens import BrokerTokenProvider
from peepers_common.notifications import decode_value
from peepers_common.settings import KafkaSettings

BATCH = 500  # records per getmany, as the kit's take_events batches


async def plain_loop(
    kafka: KafkaSettings,
    topics: list[str],
    api_url: str,
    tokens: BrokerTokenProvider,
    session: aiohttp.ClientSession,
) -> tuple[int, float]:
    """Records fetched and records/s over the topics' records up to their ends now."""
    ends = {tp: end for tp, end in (await end_offsets(kafka, topics)).items() if end > 0}
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=f"proof-baseline-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    done = 0
    started = time.monotonic()
    try:
        while await _behind(consumer, ends):
            batches = await consumer.getmany(timeout_ms=500, max_records=BATCH)
            records = [r for batch in batches.values() for r in batch]
            by_key: dict[bytes | None, list[ConsumerRecord[bytes, bytes]]] = {}
            for record in records:
                by_key.setdefault(record.key, []).append(record)
            await asyncio.gather(
                *(_fetch_in_order(session, api_url, tokens, rs) for rs in by_key.values())
            )
            done += len(records)
    finally:
        await consumer.stop()
    took = time.monotonic() - started
    return done, round(done / took, 1) if took > 0 else 0.0


async def _behind(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    assigned = consumer.assignment()
    for tp, end in ends.items():
        if tp not in assigned:  # the group is still joining
            return True
        if int(await consumer.position(tp)) < end:
            return True
    return False


async def _fetch_in_order(
    session: aiohttp.ClientSession,
    api_url: str,
    tokens: BrokerTokenProvider,
    records: list[ConsumerRecord[bytes, bytes]],
) -> None:
    for record in records:
        if record.value is None:
            continue
        notification = decode_value(record.value)
        token = await tokens.access_token(notification.user_id)
        url = api_url.rstrip("/") + "/" + notification.resource.lstrip("/")
        async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as response:
            await response.read()
