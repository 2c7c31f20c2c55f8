"""The Kafka side of live updates: every partition of the public topics into the `LiveHub`.

No consumer group: each replica needs every seller's events (its pages may belong to any
seller), which a group would share out among replicas instead. Nothing is committed: a
starting replica reads the last ``live_replay_s`` of the domain topics (by timestamp), so
a page that reconnects to it finds its ``Last-Event-ID``, and the sellers topic from its
start (it is small), so the connection status is known.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from peepers_auth.web.live import LiveHub, parse_event, seller_status
from peepers_common.errors import InfrastructureError
from peepers_common.kafka import end_offsets
from peepers_common.settings import KafkaSettings

log = logging.getLogger(__name__)


async def _assign(
    consumer: AIOKafkaConsumer,
    ends: Mapping[TopicPartition, int],
    sellers_topic: str,
    replay_s: int,
) -> None:
    consumer.assign(list(ends))
    domain = [tp for tp in ends if tp.topic != sellers_topic]
    since_ms = int((time.time() - replay_s) * 1000)
    offsets = await consumer.offsets_for_times(dict.fromkeys(domain, since_ms))
    for tp in domain:
        found = offsets.get(tp)
        consumer.seek(tp, found.offset if found is not None else ends[tp])
    sellers = [tp for tp in ends if tp.topic == sellers_topic]
    if sellers:
        await consumer.seek_to_beginning(*sellers)


async def _caught_up(consumer: AIOKafkaConsumer, ends: Mapping[TopicPartition, int]) -> bool:
    """Whether every partition has been read up to its end when the replica started."""
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True


async def _follow(
    consumer: AIOKafkaConsumer,
    hub: LiveHub,
    sellers_topic: str,
    ends: Mapping[TopicPartition, int],
    ready: asyncio.Event,
) -> None:
    while True:
        batches = await consumer.getmany(timeout_ms=500, max_records=500)
        for tp, records in batches.items():
            for record in records:
                if tp.topic == sellers_topic:
                    status = seller_status(record.value)
                    if status is not None:
                        hub.statuses[status[0]] = status[1]
                event = parse_event(tp.topic, tp.partition, record.offset, record.value)
                if event is not None:
                    hub.publish(event)
        # Not on the first batch: a fetch may return before every partition is read,
        # and a page resuming here then would be told to reload for an id still coming.
        if not ready.is_set() and await _caught_up(consumer, ends):
            ready.set()


@asynccontextmanager
async def live_feed(
    kafka: KafkaSettings,
    hub: LiveHub,
    *,
    topics: Sequence[str],
    sellers_topic: str,
    replay_s: int,
) -> AsyncIterator[asyncio.Event]:
    """Follow the topics into ``hub`` until the context ends.

    The event it yields is set once every partition is read up to where it ended when
    the replica started (its replay window is in the hub).
    """
    # The partitions (and their ends) of every topic; raises if one does not exist.
    ends = await end_offsets(kafka, [*topics, sellers_topic])
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers,
        client_id=kafka.client_id,
        enable_auto_commit=False,
        auto_offset_reset="latest",
    )
    try:
        await consumer.start()
        await _assign(consumer, ends, sellers_topic, replay_s)
    except KafkaError as exc:
        await consumer.stop()
        msg = f"cannot follow {[*topics, sellers_topic]}: {exc}"
        raise InfrastructureError(msg) from exc
    except BaseException:
        await consumer.stop()
        raise
    ready = asyncio.Event()
    task = asyncio.create_task(_follow(consumer, hub, sellers_topic, ends, ready))
    try:
        yield ready
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        except KafkaError:
            log.exception("live feed stopped on a Kafka error")
        await consumer.stop()
