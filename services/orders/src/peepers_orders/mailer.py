"""The mailer: its own process (``python -m peepers_orders mailer``) and consumer group.

A slow or dead SMTP server must never hold up the order cache, so mail is not sent by the
orders worker at all: a separate process (its own Deployment, its own ``make run`` child)
reads ``peepers.orders.v1`` with aiokafka consumers of its own:

* ``peepers.orders.v1`` (group ``settings.mail.app_id``): each event through
  `mail.on_order_event` under the mailer's retry policy (`RecordProcessor`): an SMTP
  outage parks the mail on ``peepers.orders.v1.retry`` with the ``orders-mailer``
  consumer name;
* ``peepers.orders.v1.retry`` (group ``<app_id>-retry``): the mailer's parked records,
  each when due.

Offsets are committed after a partition's records of one poll are processed, so a crash
redelivers what was not finished; the ledger makes that harmless. A partition a rebalance
takes away mid-batch is left to its new owner at once (`GroupLoop`): the old owner does
not go on sending its batch, nor restart on the refused commit. The process serves
``/healthz``, ``/readyz`` (with the ledger's restore state) and ``/metrics`` on
``ORDERS_HTTP_PORT``, and stops promptly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, suppress
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from peepers_common.changelog import Changelog, RedisViewMarker
from peepers_common.consumer_lag import ConsumerLagMonitor
from peepers_common.consuming import Handler, InboundRecord, RecordProcessor, sleep_until_due
from peepers_common.namespaces import redis_errors
from peepers_common.read_api import read_api, serve
from peepers_common.settings import KafkaSettings
from peepers_common.topics import ORDERS_EMAILS_CHANGELOG, PEEPERS_ORDERS, retry_topic
from peepers_orders.adapters.mail_ledger import (
    ChangelogMailLedger,
    RedisMailClaims,
    RedisMailView,
)
from peepers_orders.adapters.redis_store import RedisSellerDirectory
from peepers_orders.adapters.smtp import SmtpMailSender
from peepers_orders.app import ml_api, open_clients
from peepers_orders.mail import Mailer, Templates, on_order_event
from peepers_orders.settings import Settings

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
                    await self._drain(consumer, partition, records)
        finally:
            await consumer.stop()

    async def _drain(
        self, consumer: AIOKafkaConsumer, partition: TopicPartition, records: list[ConsumerRecord]
    ) -> None:
        """Handle one partition's records of a poll while it is ours, then commit them.

        A rebalance can take the partition away mid-batch: its new owner starts again from
        the last commit, so the rest of the batch is left to it (the claim and the ledger
        keep a record both handle from mailing twice). The commit then fails; that is no
        Kafka failure to restart the consumer for (a restart is one more rebalance for the
        whole group, and each one hands batches over again).
        """
        done: int | None = None
        for record in records:
            if partition not in consumer.assignment():
                break
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
            done = record.offset
        if done is None:
            return
        try:
            await consumer.commit({partition: done + 1})
        except (CommitFailedError, IllegalStateError) as exc:
            log.info(
                "%s: %s was reassigned; its new owner goes on: %r", self._group, partition, exc
            )


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


async def run_mailer(settings: Settings, stop: asyncio.Event) -> None:
    """The mailer process: its clients, probes and loops, until `stop` is set."""
    async with AsyncExitStack() as stack:
        clients = await open_clients(settings, stack)
        redis, namespace = clients.redis, clients.namespace
        view = RedisMailView(redis, namespace)
        ledger = await stack.enter_async_context(
            Changelog(
                settings.kafka,
                settings.topic_prefix + ORDERS_EMAILS_CHANGELOG,
                view=view,
                marker=RedisViewMarker(redis, namespace, "emails"),
            )
        )
        mailer = Mailer(
            ledger=ChangelogMailLedger(ledger, view),
            # Longer than a send takes (connect, commands, the ledger's writes), and short:
            # a mailer killed mid-send holds its mail until the claim lapses (the retry
            # then sends it, if the ledger does not have it).
            claims=RedisMailClaims(redis, namespace, ttl_s=2 * settings.smtp.timeout_s + 10),
            sender=SmtpMailSender(settings.smtp),
            sellers=RedisSellerDirectory(redis, namespace),
            ml=ml_api(settings, clients.session, redis),
            mail=settings.mail,
            smtp=settings.smtp,
            templates=Templates(),
        )

        async def ready() -> tuple[bool, dict[str, Any]]:
            """Ready when Redis answers; the body says how the ledger's view stands."""
            with redis_errors("answering a ping"):
                await redis.ping()
            return True, {
                "status": "ready",
                "mail_ledger": ledger.state.value,
                "mail_ledger_restore": ledger.progress.as_dict(),
            }

        api = read_api(MAILER, credentials=settings.service_credentials, ready=ready)
        await serve(api, stack, settings.http_host, settings.http_port)

        async def handle(record: InboundRecord) -> str:
            return await on_order_event(record.value, mailer)

        events = settings.topic_prefix + PEEPERS_ORDERS
        loops = MailerLoops(
            settings.kafka,
            topic=events,
            retry_topic=retry_topic(events),
            group=settings.mail.app_id,
            processor=RecordProcessor(
                consumer=MAILER, publisher=clients.publisher, policy=settings.mail.retry.policy()
            ),
            handler=handle,
        )
        await loops.start()
        stack.push_async_callback(loops.aclose)
        await stack.enter_async_context(
            ConsumerLagMonitor(
                settings.kafka, settings.mail.app_id, [events], interval_s=settings.lag_interval_s
            )
        )
        log.info("orders mailer ready; probes on port %d", settings.http_port)
        await stop.wait()
        log.info("orders mailer stopping")
