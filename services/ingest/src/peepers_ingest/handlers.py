"""Accepting a validated notification: dedup, Kafka within a budget, else the spool.

The promise to ML: a 200 means the notification is in Kafka (acks=all) or fsync'd in the
local spool, and it is never published twice by this process. The order of one key (one
resource) is kept: while a record of a key waits in the spool, later records of that key
queue behind it, and the drain sends at most one record per key per round.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, NamedTuple

from peepers_common.coalesce import Coalescer
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
from peepers_ingest.errors import SpoolUnavailable
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


async def _settled_within(sends: list[asyncio.Future[Published]], budget_s: float) -> None:
    """Wait until every send is done, or ``budget_s`` has passed; never cancel one.

    `asyncio.wait` does this too, but checks each future for a coroutine, copies them into
    a set and takes its callback off each one again: per record, on every webhook.
    """
    loop = sends[0].get_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    pending = len(sends)

    def wake() -> None:
        if not waiter.done():
            waiter.set_result(None)

    def settled(_: object) -> None:
        nonlocal pending
        pending -= 1
        if not pending:
            wake()

    for send in sends:
        send.add_done_callback(settled)
    timer = loop.call_later(budget_s, wake)
    try:
        await waiter
    finally:
        timer.cancel()
        if pending:  # the budget ran out first: the late ones keep no callback of ours
            for send in sends:
                send.remove_done_callback(settled)


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


_NEWLY_DURABLE: Final = frozenset({Outcome.PUBLISHED, Outcome.SPOOLED})
# What one record of a batch came to: how it was made durable, or why it could not be.
_Result = Outcome | SpoolUnavailable


class _HeldBack(NamedTuple):
    """Not tried: the id is in an earlier batch that is still running.

    ``earlier`` ends with the ids that batch made durable.
    """

    earlier: asyncio.Future[set[str]]


class Intake:
    """The use case behind the webhook (and the reconciler).

    The records accepted during one turn of the event loop go through as one batch
    (`peepers_common.coalesce`): one dedup check, their sends to Kafka, one wait for the
    acknowledgements within the budget, the spool for what missed it, one dedup mark. A
    webhook then costs one future and one suspension, where each of those steps used to
    suspend it (issue 5's saturation target).

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
        # Kafka's publisher hands back its acknowledgement future: no task per record.
        self._send = publisher.send if isinstance(publisher, RecordSender) else _as_task(publisher)
        self._batches: Coalescer[OutboundRecord, _Result | _HeldBack] = Coalescer(
            self._accept_batch
        )
        # Ids whose batch is running, to the ids that batch made durable once it is done:
        # a redelivery in a later batch waits for the first.
        self._accepting: dict[str, asyncio.Future[set[str]]] = {}
        self._late_marks: set[asyncio.Future[None]] = set()
        if spool.depth:
            self.kafka_healthy = False
            self.spool_wakeup.set()

    async def accept(self, record: OutboundRecord) -> Outcome:
        """Make ``record`` durable exactly once; return how.

        Raises:
            SpoolUnavailable: Kafka did not ack in time and the spool failed too.
        """
        result = await self._batches.submit(record)
        while isinstance(result, _HeldBack):
            # A redelivery racing its original: wait for the original's batch alone.
            await asyncio.wait([result.earlier])  # never cancels the earlier batch's future
            if record.notification_id in result.earlier.result():
                # Durable there, so a duplicate here: even if Redis lost that mark.
                _notifications(Outcome.DUPLICATE).inc()
                return Outcome.DUPLICATE
            result = await self._batches.submit(record)
        if isinstance(result, SpoolUnavailable):
            raise result
        return result

    async def _accept_batch(self, records: list[OutboundRecord]) -> list[_Result | _HeldBack]:
        ids = [record.notification_id for record in records]
        results: list[_Result | _HeldBack | None] = [None] * len(records)
        now: list[int] = []
        for index, nid in enumerate(ids):
            earlier = self._accepting.get(nid)
            if earlier is None:
                now.append(index)
            else:  # still in an earlier, running batch: tried again once that one is done
                results[index] = _HeldBack(earlier)
        # Registered only after the scan: a second copy of an id in this batch must share
        # its first copy's fate here, not wait for this very batch.
        running: asyncio.Future[set[str]] = asyncio.get_running_loop().create_future()
        for index in now:
            self._accepting[ids[index]] = running
        durable: set[str] = set()
        try:
            await self._accept_group(records, now, results, durable)
        finally:
            for index in now:
                if self._accepting.get(ids[index]) is running:
                    del self._accepting[ids[index]]
            running.set_result(durable)
        settled = [result for result in results if result is not None]
        for outcome, count in collections.Counter(
            result for result in settled if isinstance(result, Outcome)
        ).items():
            _notifications(outcome).inc(count)
        return settled

    async def _accept_group(
        self,
        records: list[OutboundRecord],
        indexes: list[int],
        results: list[_Result | _HeldBack | None],
        durable: set[str],
    ) -> None:
        """Settle ``records[i]`` for each of ``indexes`` into ``results``.

        The ids made durable are added to ``durable``. A failure is one record's (spooled,
        or refused with `SpoolUnavailable`), never the whole group's.
        """
        if not indexes:
            return
        seen = await self._dedup.seen([records[i].notification_id for i in indexes])
        first: dict[str, int] = {}  # id -> the index of its first record in the group
        copies: list[int] = []
        sends: dict[int, asyncio.Future[Published]] = {}
        spooled: list[int] = []
        for index, was_seen in zip(indexes, seen, strict=True):
            record = records[index]
            if was_seen:
                results[index] = Outcome.DUPLICATE
            elif record.notification_id in first:
                copies.append(index)  # shares its first copy's fate, below
            else:
                first[record.notification_id] = index
                if self.kafka_healthy and not self._spool.holds_key(record.key):
                    sends[index] = self._send(
                        record.topic, key=record.key, value=record.value, headers=record.headers
                    )
                else:
                    spooled.append(index)
        if sends:
            await _settled_within(list(sends.values()), self._budget_s)
        for index, send in sends.items():
            if not send.done():
                send.add_done_callback(_retrieve)
                self._orphans[records[index].notification_id] = send
                self._degrade("Kafka did not acknowledge within the budget")
                spooled.append(index)
            elif send.cancelled():
                self._degrade("a publish was cancelled")
                spooled.append(index)
            elif (error := send.exception()) is not None:
                if not isinstance(error, PublishError):
                    log.error("publishing a notification failed unexpectedly", exc_info=error)
                self._degrade(str(error))
                spooled.append(index)
            else:
                results[index] = Outcome.PUBLISHED
        if spooled:
            await self._spool_all(records, sorted(spooled), results)
        made_durable = [
            records[i].notification_id for i in first.values() if results[i] in _NEWLY_DURABLE
        ]
        if made_durable:
            await self._dedup.mark(made_durable)
            durable.update(made_durable)
        for index in copies:
            original = results[first[records[index].notification_id]]
            failed = isinstance(original, SpoolUnavailable)
            results[index] = SpoolUnavailable(str(original)) if failed else Outcome.DUPLICATE

    async def _spool_all(
        self,
        records: list[OutboundRecord],
        indexes: list[int],
        results: list[_Result | _HeldBack | None],
    ) -> None:
        # Appended in arrival order (the spool keeps the order of its append calls), and
        # group-committed by the spool: one fsync for the lot.
        appended = await asyncio.gather(
            *(self._spool.append(records[i]) for i in indexes), return_exceptions=True
        )
        for index, error in zip(indexes, appended, strict=True):
            nid = records[index].notification_id
            if error is None:
                results[index] = Outcome.SPOOLED
                continue
            if not isinstance(error, SpoolUnavailable):
                log.error("spooling a notification failed unexpectedly", exc_info=error)
                error = SpoolUnavailable(f"spool write failed: {error!r}")
            results[index] = error
            orphan = self._orphans.pop(nid, None)
            if orphan is not None:
                # Answered 503, but Kafka may take it yet: then mark it, so ML's
                # redelivery is not published a second time.
                orphan.add_done_callback(functools.partial(self._mark_if_published, nid))
        if any(error is None for error in appended):
            self.spool_wakeup.set()

    def _mark_if_published(self, notification_id: str, send: asyncio.Future[Published]) -> None:
        if not send.cancelled() and send.exception() is None:
            task = asyncio.ensure_future(self._dedup.mark([notification_id]))
            self._late_marks.add(task)
            task.add_done_callback(self._late_marks.discard)

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
