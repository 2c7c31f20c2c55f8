"""Accepting a validated notification: dedup, Kafka within a budget, else the spool.

The promise to ML: a 200 means the notification is in Kafka (acks=all) or fsync'd in the
local spool, and it is never published twice by this process. The order of one key (one
resource) is kept: while a record of a key waits in the spool, later records of that key
queue behind it, and the drain sends at most one record per key per round.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from peepers_common.errors import PublishError
from peepers_common.kafka import EventPublisher, Headers, Published, RecordSender
from peepers_common.notifications import (
    Notification,
    cloudevent_headers,
    encode_value,
    record_key,
)
from peepers_common.topics import notification_topic
from peepers_ingest import metrics
from peepers_ingest.ports import Deduplicator, OutboundRecord, Spool, SpooledRecord

__all__ = ["Intake", "Outcome", "build_record", "prefixed_topics"]

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    PUBLISHED = "published"
    SPOOLED = "spooled"
    DUPLICATE = "duplicate"


def prefixed_topics(prefix: str) -> Callable[[str], str]:
    """ML topic -> Kafka topic from the registry, behind an optional prefix."""

    def topic_for(ml_topic: str) -> str:
        return prefix + notification_topic(ml_topic)

    return topic_for


def build_record(
    notification: Notification,
    body: Mapping[str, Any],
    *,
    topic_for: Callable[[str], str],
    received_at: datetime,
    traceparent: str | None,
) -> OutboundRecord:
    return OutboundRecord(
        notification_id=notification.notification_id,
        topic=topic_for(notification.topic),
        key=record_key(notification),
        value=encode_value(body, received_at),
        headers=tuple(
            cloudevent_headers(notification, received_at=received_at, traceparent=traceparent)
        ),
    )


# Three outcomes: each series is looked up once, not on every notification.
_notifications = functools.cache(metrics.NOTIFICATIONS.labels)


async def _settled_within(send: asyncio.Future[Any], budget_s: float) -> bool:
    """Wait up to ``budget_s`` for ``send``; True once it is done, False if it outlived it.

    ``send`` itself is never cancelled. One timer and one future: a third of the CPU of
    ``asyncio.timeout`` around ``asyncio.shield``, on every webhook.
    """
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    timer = loop.call_later(budget_s, wake)
    send.add_done_callback(wake)
    try:
        await waiter
    finally:
        timer.cancel()
        send.remove_done_callback(wake)
    return send.done()


def _as_task(publisher: EventPublisher) -> Callable[..., asyncio.Future[Published]]:
    def send(
        topic: str, *, key: bytes, value: bytes, headers: Headers = ()
    ) -> asyncio.Future[Published]:
        return asyncio.ensure_future(
            publisher.publish(topic, key=key, value=value, headers=headers)
        )

    return send


def _retrieve(task: asyncio.Future[Published]) -> None:
    # An orphaned send may fail after nobody awaits it any more; its record is in the
    # spool, so the failure is expected and must not be reported as unhandled.
    if not task.cancelled():
        task.exception()


class Intake:
    """The use case behind the webhook (and the reconciler).

    ``kafka_healthy`` drops to False when a publish fails or outlives its budget; then
    every notification goes straight to the spool (fast, and in arrival order) until a
    drain round empties the spool again.
    """

    def __init__(
        self,
        publisher: EventPublisher,
        spool: Spool,
        dedup: Deduplicator,
        *,
        topic_for: Callable[[str], str],
        budget_s: float,
        drain_batch: int = 500,
        drain_publish_timeout_s: float = 15.0,
    ) -> None:
        self._publisher = publisher
        self._spool = spool
        self._dedup = dedup
        self.topic_for = topic_for
        self._budget_s = budget_s
        self._drain_batch = drain_batch
        self._drain_publish_timeout_s = drain_publish_timeout_s
        self.kafka_healthy = True
        self.spool_wakeup = asyncio.Event()
        # Sends that outlived their budget while their record went to the spool; the
        # drain waits for them before publishing the spooled copy (no duplicate).
        self._orphans: dict[str, asyncio.Future[Published]] = {}
        # Kafka's publisher hands back its acknowledgement future: no task per webhook.
        self._send = publisher.send if isinstance(publisher, RecordSender) else _as_task(publisher)
        # Ids being accepted right now: a concurrent redelivery waits for the first.
        self._accepting: dict[str, asyncio.Event] = {}
        if spool.depth:
            self.kafka_healthy = False
            self.spool_wakeup.set()

    async def accept(self, record: OutboundRecord) -> Outcome:
        """Make ``record`` durable exactly once; return how.

        Raises:
            SpoolUnavailable: Kafka did not ack in time and the spool failed too.
        """
        nid = record.notification_id
        while (running := self._accepting.get(nid)) is not None:
            await running.wait()
        done = self._accepting[nid] = asyncio.Event()
        try:
            outcome = await self._accept(record)
        finally:
            del self._accepting[nid]
            done.set()
        _notifications(outcome).inc()
        return outcome

    async def _accept(self, record: OutboundRecord) -> Outcome:
        nid = record.notification_id
        if await self._dedup.seen(nid):
            return Outcome.DUPLICATE
        if self.kafka_healthy and not self._spool.holds_key(record.key):
            send = self._send(
                record.topic, key=record.key, value=record.value, headers=record.headers
            )
            if not await _settled_within(send, self._budget_s):
                send.add_done_callback(_retrieve)
                self._orphans[nid] = send
                self._degrade("Kafka did not acknowledge within the budget")
            elif isinstance(error := send.exception(), PublishError):
                self._degrade(str(error))
            else:
                send.result()  # any other failure is a bug: raised as it is
                await self._dedup.mark(nid)
                return Outcome.PUBLISHED
        try:
            await self._spool.append(record)
        except BaseException:
            self._orphans.pop(nid, None)
            raise
        self.spool_wakeup.set()
        await self._dedup.mark(nid)
        return Outcome.SPOOLED

    def _degrade(self, why: str) -> None:
        if self.kafka_healthy:
            log.warning("spooling notifications until Kafka recovers: %s", why)
        self.kafka_healthy = False

    # ------------------------------------------------------------------ drain
    async def drain_once(self) -> int:
        """Publish what the spool holds, oldest first, until it is empty.

        Returns how many records reached Kafka.

        Raises:
            PublishError: Kafka refused a record (what reached Kafka before is removed).
        """
        drained = 0
        while True:
            head = await self._spool.head(self._drain_batch)
            if not head:
                if not self.kafka_healthy:
                    log.info("spool drained; publishing directly again")
                self.kafka_healthy = True
                return drained
            batch = _first_of_each_key(head)
            results = await asyncio.gather(
                *(self._deliver(spooled) for spooled in batch), return_exceptions=True
            )
            delivered = [s for s, r in zip(batch, results, strict=True) if r is None]
            await self._spool.remove(delivered)
            drained += len(delivered)
            metrics.DRAINED.inc(len(delivered))
            for result in results:
                if isinstance(result, asyncio.CancelledError):
                    raise result
                if isinstance(result, BaseException):
                    self._degrade(str(result))
                    msg = f"draining the spool failed: {result}"
                    raise PublishError(msg) from result

    async def _deliver(self, spooled: SpooledRecord) -> None:
        record = spooled.record
        orphan = self._orphans.pop(record.notification_id, None)
        if orphan is not None:
            with contextlib.suppress(PublishError):
                await orphan
                return
        try:
            async with asyncio.timeout(self._drain_publish_timeout_s):
                await self._publisher.publish(
                    record.topic, key=record.key, value=record.value, headers=record.headers
                )
        except TimeoutError:
            msg = f"Kafka did not acknowledge a spooled record for {record.topic}"
            raise PublishError(msg) from None

    async def settle_orphans(self, timeout_s: float) -> None:
        """Wait (bounded) for sends still in flight, e.g. before shutdown."""
        if self._orphans:
            await asyncio.wait(list(self._orphans.values()), timeout=timeout_s)


def _first_of_each_key(head: Sequence[SpooledRecord]) -> list[SpooledRecord]:
    # One record per key per round: records of one key are published strictly one after
    # the other, so a failure can never let a later one overtake an earlier one.
    seen: set[bytes] = set()
    batch: list[SpooledRecord] = []
    for spooled in head:
        if spooled.record.key not in seen:
            seen.add(spooled.record.key)
            batch.append(spooled)
    return batch
