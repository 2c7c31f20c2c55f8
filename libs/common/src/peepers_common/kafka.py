"""Kafka: the `EventPublisher` port and its aiokafka adapter, and reading a topic's records.

The adapter is an idempotent producer with ``acks=all``: a record is acknowledged only once
every in-sync replica has it, and retries never duplicate it within a producer session.
`end_offsets`, `caught_up`, `lag` and `read_to_end` serve operator tools (the DLQ tool, the dev
stack, the proof) and tests; `batches_to` streams a topic up to given ends (changelog
restores).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from contextlib import aclosing
from typing import Any, Final, NamedTuple, Protocol, runtime_checkable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner, murmur2

from peepers_common.errors import InfrastructureError, PublishError
from peepers_common.lifecycle import AsyncResource
from peepers_common.settings import KafkaSettings

log = logging.getLogger(__name__)

Headers = Sequence[tuple[str, bytes]]


class Published(NamedTuple):  # one per record acked: a named tuple is the cheapest to build
    topic: str
    partition: int
    offset: int


class EventPublisher(Protocol):
    async def publish(
        self, topic: str, *, key: bytes, value: bytes, headers: Headers = ()
    ) -> Published:
        """Send one record and return once Kafka acknowledged it.

        Raises:
            PublishError: Kafka did not acknowledge it.
        """
        ...


@runtime_checkable
class RecordSender(Protocol):
    """A publisher that can hand back the acknowledgement as a plain future.

    For a caller that waits on many sends under a deadline (ingest): awaiting the future
    spares it a task per record.
    """

    def send(
        self, topic: str, *, key: bytes, value: bytes, headers: Headers = ()
    ) -> asyncio.Future[Published]:
        """Queue one record; the future holds its offset once Kafka acked it.

        The future fails with `PublishError` when Kafka did not acknowledge it.
        """
        ...


# aiokafka's murmur2 is pure Python (~5 us a key); keys repeat (one per resource), so
# each is hashed once. Same hash as Java's default partitioner: same partition.
_murmur2 = functools.lru_cache(maxsize=65_536)(murmur2)


def _partition(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    if key is None:
        return int(DefaultPartitioner()(key, all_partitions, available))
    return all_partitions[(int(_murmur2(key)) & 0x7FFFFFFF) % len(all_partitions)]


class AIOKafkaEventPublisher(AsyncResource):
    """`EventPublisher` over aiokafka. Use as ``async with`` or call start()/aclose().

    Records are not handed to aiokafka one by one: aiokafka's per-record path (a future,
    a metadata check and a lookup per record, a result object per record on the ack)
    cost more CPU than the rest of an ingest request. Whatever the callers publish while
    the previous records are being enqueued is grouped by partition, appended to
    aiokafka's record-batch builder (C code) and enqueued as whole batches, in the order
    of the calls; each caller still gets its own record's offset once Kafka acked it.
    """

    def __init__(self, settings: KafkaSettings, *, linger_ms: int = 2) -> None:
        self._settings = settings
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers,
            client_id=settings.client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=linger_ms,
            request_timeout_ms=settings.request_timeout_ms,
            partitioner=_partition,
            # Room for a round's records of one partition in one batch.
            max_batch_size=_MAX_BATCH_BYTES,
        )
        self._started = False
        self._closed = False
        self._queue: list[_Pending] = []
        self._enqueuing: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        try:
            await self._producer.start()
        except KafkaError as exc:
            await self._producer.stop()
            msg = f"cannot connect to Kafka at {self._settings.bootstrap_servers}: {exc!r}"
            raise PublishError(msg) from exc
        self._started = True
        self._loop = asyncio.get_running_loop()

    async def publish(
        self, topic: str, *, key: bytes, value: bytes, headers: Headers = ()
    ) -> Published:
        return await self.send(topic, key=key, value=value, headers=headers)

    def send(
        self, topic: str, *, key: bytes, value: bytes, headers: Headers = ()
    ) -> asyncio.Future[Published]:
        # The loop the producer started on: asyncio.get_running_loop() makes a getpid
        # system call on Python 3.11, on every record.
        loop = self._loop or asyncio.get_running_loop()
        acked: asyncio.Future[Published] = loop.create_future()
        if not self._started or self._closed:
            acked.set_exception(
                PublishError("the Kafka publisher is not started (or already closed)")
            )
            return acked
        self._queue.append(_Pending(topic, key, value, headers, acked))
        if self._enqueuing is None:
            self._enqueuing = loop.create_task(self._enqueue_all(), name="kafka-enqueue")
        return acked

    async def _enqueue_all(self) -> None:
        # One enqueuer at a time keeps the calls' order, and lets the records that arrive
        # while it waits (for metadata, for a partition's previous batch to be sent)
        # form the next, larger round.
        records: list[_Pending] = []
        try:
            while self._queue:
                records, self._queue = self._queue, []
                await self._enqueue(records)
        except Exception as exc:
            log.exception("enqueuing records for Kafka failed")
            _fail(records + self._queue, exc)
            self._queue = []
        finally:
            self._enqueuing = None

    async def _enqueue(self, records: list[_Pending]) -> None:
        partitions = await self._partitions_by_topic({record.topic for record in records})
        batches: dict[tuple[str, int], _Batch] = {}
        for record in records:
            known = partitions[record.topic]
            if isinstance(known, BaseException):
                _fail([record], known)
                continue
            partition = _partition(record.key, known, [])
            batch = batches.get((record.topic, partition))
            if batch is None:
                batch = batches[(record.topic, partition)] = _Batch(self._producer.create_batch())
            try:
                if not batch.add(record):
                    # Full: send it, and start the partition's next batch with this record
                    # (a fresh batch takes its first record whatever its size).
                    await self._send(batch, record.topic, partition)
                    batch = _Batch(self._producer.create_batch())
                    batches[(record.topic, partition)] = batch
                    batch.add(record)
            except (TypeError, ValueError) as exc:  # a malformed record fails alone
                _fail([record], exc)
                continue
            if batch.oversized:
                # Only a record alone in its batch can be, and the batch is dropped unsent:
                # a record the broker refuses would still spend a sequence number, and the
                # partition's later batches would fail as out of order.
                _fail([record], ValueError(f"the record is over {_MAX_RECORD_BYTES} bytes"))
                batches[(record.topic, partition)] = _Batch(self._producer.create_batch())
        for (topic, partition), batch in batches.items():
            await self._send(batch, topic, partition)

    async def _partitions_by_topic(self, topics: set[str]) -> dict[str, list[int] | BaseException]:
        """Each topic's partitions, from the producer's metadata (which aiokafka refreshes).

        Topics it does not know yet are asked for together, so a missing topic costs a
        round one request timeout, not one per record.
        """
        cluster = self._producer.client.cluster
        found: dict[str, list[int] | BaseException] = {}
        unknown: list[str] = []
        for topic in topics:
            known = cluster.partitions_for_topic(topic)
            if known:
                found[topic] = sorted(known)
            else:
                unknown.append(topic)
        if unknown:
            answers = await asyncio.gather(
                *(self._producer.partitions_for(topic) for topic in unknown),
                return_exceptions=True,
            )
            for topic, answer in zip(unknown, answers, strict=True):
                found[topic] = answer if isinstance(answer, BaseException) else sorted(answer)
        return found

    async def _send(self, batch: _Batch, topic: str, partition: int) -> None:
        if not batch.records:
            return
        try:
            delivered = await self._producer.send_batch(batch.builder, topic, partition=partition)
        except KafkaError as exc:
            _fail((record for record, _ in batch.records), exc)
            return
        delivered.add_done_callback(functools.partial(_settle, batch.records, topic, partition))

    async def aclose(self) -> None:
        """Flush what is in flight, then stop. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._enqueuing is not None:
            await asyncio.wait([self._enqueuing])
        if self._started:
            await self._producer.flush()
        await self._producer.stop()


# aiokafka's max_request_size and the broker's default max.message.bytes.
_MAX_BATCH_BYTES: Final = 1024 * 1024
# What a record may take in a batch: the limit less a record batch's own header.
_MAX_RECORD_BYTES: Final = _MAX_BATCH_BYTES - 61


class _Pending(NamedTuple):  # one per record: a named tuple is the cheapest to build
    topic: str
    key: bytes
    value: bytes
    headers: Headers
    acked: asyncio.Future[Published]


class _Batch:
    """One partition's records of a round, in aiokafka's builder, with their offsets in it."""

    __slots__ = ("builder", "oversized", "records")

    def __init__(self, builder: Any) -> None:
        self.builder = builder
        self.records: list[tuple[_Pending, int]] = []
        # The last record appended is over the limit: measured as encoded, once appended
        # (cheaper than summing every record's parts first, on every record).
        self.oversized = False

    def add(self, record: _Pending) -> bool:
        appended = self.builder.append(
            key=record.key, value=record.value, timestamp=None, headers=list(record.headers)
        )
        if appended is None:
            return False
        self.records.append((record, appended.offset))
        self.oversized = appended.size > _MAX_RECORD_BYTES
        return True


def _fail(records: Iterable[_Pending], exc: BaseException) -> None:
    for record in records:
        if not record.acked.done():
            msg = f"Kafka did not acknowledge a record for {record.topic}: {exc!r}"
            record.acked.set_exception(PublishError(msg))


def _settle(
    records: list[tuple[_Pending, int]], topic: str, partition: int, delivered: asyncio.Future[Any]
) -> None:
    if delivered.cancelled():
        _fail((record for record, _ in records), KafkaError("the batch was cancelled"))
        return
    if (exc := delivered.exception()) is not None:
        _fail((record for record, _ in records), exc)
        return
    base = delivered.result().offset
    for record, index in records:
        if not record.acked.done():
            record.acked.set_result(Published(topic, partition, base + index))


async def end_offsets(settings: KafkaSettings, topics: Sequence[str]) -> dict[TopicPartition, int]:
    """The current end offset of every partition of ``topics``.

    Raises:
        InfrastructureError: a topic does not exist, or Kafka did not answer.
    """
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
        try:
            await admin.start()
            described = await admin.describe_topics(list(topics))
        finally:
            await admin.close()
        partitions = []
        for topic in described:
            found = [TopicPartition(topic["topic"], p["partition"]) for p in topic["partitions"]]
            if topic.get("error_code") or not found:
                msg = f"topic {topic['topic']} does not exist (run peepers-topics ensure)"
                raise InfrastructureError(msg)
            partitions += found
        reader = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
        try:  # started inside: a cancelled start (a restore stopped early) still closes
            await reader.start()
            ends: dict[TopicPartition, int] = await reader.end_offsets(partitions)
        finally:
            await reader.stop()
    except KafkaError as exc:
        msg = f"cannot read the ends of {list(topics)}: {exc!r}"
        raise InfrastructureError(msg) from exc
    return ends


async def caught_up(settings: KafkaSettings, group: str, topics: Sequence[str]) -> bool:
    """Whether ``group`` committed up to the end of every non-empty partition of ``topics``."""
    return await lag(settings, group, topics) == 0


async def lag(settings: KafkaSettings, group: str, topics: Sequence[str]) -> int:
    """The records of ``topics`` past ``group``'s commits (never committed: all of them)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    ends = await end_offsets(settings, topics)
    done = {tp: meta.offset for tp, meta in committed.items()}
    return sum(max(end - max(done.get(tp, 0), 0), 0) for tp, end in ends.items())


async def read_to_end(
    settings: KafkaSettings, topics: Sequence[str], *, timeout_s: float = 30.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record now in ``topics``, from the start up to their current end offsets.

    In order within each partition; up to the ends, not up to a count, so a record that
    should not be there shows.

    Raises:
        InfrastructureError: a topic does not exist, or the records did not arrive in time.
    """
    ends = await end_offsets(settings, topics)
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        async with asyncio.timeout(timeout_s), aclosing(batches_to(settings, ends)) as batches:
            async for batch in batches:
                records.extend(batch)
    except TimeoutError:
        msg = f"the records of {list(topics)} did not arrive within {timeout_s} s"
        raise InfrastructureError(msg) from None
    return records


async def batches_to(
    settings: KafkaSettings, ends: Mapping[TopicPartition, int]
) -> AsyncGenerator[list[ConsumerRecord[bytes, bytes]], None]:
    """The records of each partition from its start up to ``ends`` (from `end_offsets`).

    Yields them as fetched, in order within each partition, without holding them all:
    a restore of a large changelog applies each batch as it comes.

    Raises:
        InfrastructureError: Kafka failed while reading.
    """
    remaining = {tp for tp, end in ends.items() if end > 0}
    reader = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False
    )
    try:
        await reader.start()
        reader.assign(list(ends))
        await reader.seek_to_beginning(*ends)
        while remaining:
            fetched = await reader.getmany(*remaining, timeout_ms=500)
            for tp, got in fetched.items():
                # A compacted topic may end on offsets it no longer holds: stop at the end
                # asked for, whatever the last record's own offset.
                wanted = [record for record in got if record.offset < ends[tp]]
                if wanted:
                    yield wanted
                last = got[-1].offset + 1 if got else await reader.position(tp)
                if last >= ends[tp]:
                    remaining.discard(tp)
            # A partition can reach its end with nothing left to return (its last offsets
            # a transaction marker, or compacted away): getmany leaves it out, so ask
            # where it stands, or the loop would wait for it forever.
            for tp in remaining - fetched.keys():
                if await reader.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    except KafkaError as exc:
        msg = f"cannot read {sorted({tp.topic for tp in ends})}: {exc!r}"
        raise InfrastructureError(msg) from exc
    finally:
        await reader.stop()
