"""The mailer's own consumer group on ``peepers.orders.v1`` (and its parked records).

Faust runs one consumer group per app, and a slow agent can hold up the app's other
streams (the consumer waits on a full stream buffer). The mailer must never hold up the
order cache, so it reads with aiokafka consumers of its own, in the worker's process:

* ``peepers.orders.v1``: each event through `mail.on_order_event` under the mailer's
  retry policy (`RecordProcessor`): an SMTP outage parks the mail on
  ``peepers.orders.v1.retry`` with the ``orders-mailer`` consumer name;
* ``peepers.orders.v1.retry``: the mailer's parked records, each when due.

Offsets are committed after a partition's records of one poll are processed, so a crash
redelivers what was not finished; the ledger makes that harmless.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from peepers_common.consuming import Handler, InboundRecord, RecordProcessor, sleep_until_due
from peepers_common.settings import KafkaSettings

log = logging.getLogger(__name__)

MAILER: Final = "orders-mailer"
_RESTART_S: Final = 2.0
# A parked mail may wait for hours before it is due; the retry consumer must not be
# dropped from its group meanwhile.
_RETRY_MAX_POLL_MS: Final = 6 * 60 * 60 * 1000


class GroupLoop:
    """Consume ``topic`` in consumer group ``group``, record by record, until cancelled."""

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        topic: str,
        group: str,
        handle: Callable[[InboundRecord], Awaitable[None]],
        max_poll_interval_ms: int = 300_000,
    ) -> None:
        self._kafka = kafka
        self._topic = topic
        self._group = group
        self._handle = handle
        self._max_poll_ms = max_poll_interval_ms
        self.started = asyncio.Event()

    async def run(self) -> None:
        """Consume; restart the consumer after a Kafka failure (what is uncommitted comes back)."""
        while True:
            try:
                await self._consume()
            except KafkaError as exc:
                log.warning("%s on %s: %r; restarting", self._group, self._topic, exc)
                await asyncio.sleep(_RESTART_S)

    async def _consume(self) -> None:
        consumer = AIOKafkaConsumer(
            self._topic,
            bootstrap_servers=self._kafka.bootstrap_servers,
            client_id=f"{self._kafka.client_id}-mailer",
            group_id=self._group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_interval_ms=self._max_poll_ms,
        )
        await consumer.start()
        self.started.set()
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=100)
                for partition, records in batches.items():
                    for record in records:
                        await self._handle(
                            InboundRecord.from_kafka(
                                record.topic,
                                record.partition,
                                record.offset,
                                record.key,
                                record.value,
                                record.headers,
                            )
                        )
                    await consumer.commit(
                        {
                            TopicPartition(partition.topic, partition.partition): records[-1].offset
                            + 1
                        }
                    )
        finally:
            await consumer.stop()


class MailerLoops:
    """The mailer's two loops, started and stopped together."""

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        topic: str,
        retry_topic: str,
        group: str,
        processor: RecordProcessor,
        handler: Handler,
    ) -> None:
        async def fresh(record: InboundRecord) -> None:
            await processor.process(record, handler)

        async def parked(record: InboundRecord) -> None:
            if record.consumer != processor.consumer:
                return  # parked by the orders worker (analytics), not by the mailer
            await sleep_until_due(processor, record)
            await processor.process(record, handler)

        self.loops = (
            GroupLoop(kafka, topic=topic, group=group, handle=fresh),
            # A group of its own: the two loops never share partitions or a rebalance.
            GroupLoop(
                kafka,
                topic=retry_topic,
                group=f"{group}-retry",
                handle=parked,
                max_poll_interval_ms=_RETRY_MAX_POLL_MS,
            ),
        )
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(loop.run(), name=f"mailer:{index}")
            for index, loop in enumerate(self.loops)
        ]

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with suppress(asyncio.CancelledError):
                await task
        self._tasks = []
