"""What every consumer does with a record it cannot process: retry, park, dead-letter.

A Faust agent only decodes, calls a handler and acks; `RecordProcessor` wraps the handler
call with the failure policy of ARCHITECTURE.md:

* **Transient** failures (ML 5xx or 429 past the client's budget, Kafka or Redis down, the
  token source down) are retried in place with backoff for a few seconds. If they persist
  the record is **parked** on ``<topic>.retry`` with a ``not-before`` time and an attempt
  number; the service's retry agent picks it up when it is due. After the last parking
  round it goes to ``<topic>.dlq``.
* **Permanent** failures (a malformed record, 403 because the seller revoked us, an
  unknown seller, a bug) go straight to ``<topic>.dlq``.

Either way the record is acked and the partition moves on: one bad record never stalls
the ones behind it. Parking and dead-lettering are themselves retried until Kafka takes
the record, because acking a record that is nowhere would lose it.

Retry and dead-letter topics can be shared by several consumer groups of the same source
topic, so every record carries the consumer's name in ``x-peepers-consumer``; retry agents
skip records of other consumers and ``peepers-dlq replay`` sends a record back to the
retry topic for one consumer only.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from prometheus_client import Counter, Histogram
from pydantic import ValidationError
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    wait_exponential_jitter,
)

from peepers_common.error_tracking import bind_seller, current_seller, seller_of_key
from peepers_common.errors import (
    InfrastructureError,
    MlRateLimited,
    MlUnavailable,
    PeepersError,
    ResourceBusy,
    TokenUnavailable,
)
from peepers_common.kafka import EventPublisher, Headers
from peepers_common.metrics import LATENCY_BUCKETS_S
from peepers_common.topics import dlq_topic, retry_topic
from peepers_common.tracing import TraceContext, bind_trace, current_trace

log = logging.getLogger(__name__)

H_CONSUMER: Final = "x-peepers-consumer"
H_SOURCE_TOPIC: Final = "x-peepers-source-topic"
H_SOURCE_PARTITION: Final = "x-peepers-source-partition"
H_SOURCE_OFFSET: Final = "x-peepers-source-offset"
H_ATTEMPT: Final = "x-peepers-attempt"
H_NOT_BEFORE: Final = "x-peepers-not-before-ms"
H_ERROR_KIND: Final = "x-peepers-error-kind"
H_ERROR: Final = "x-peepers-error"
H_ERROR_DETAIL: Final = "x-peepers-error-detail"
H_FAILED_AT: Final = "x-peepers-failed-at-ms"
_POLICY_HEADERS: Final = frozenset(
    {
        H_CONSUMER,
        H_SOURCE_TOPIC,
        H_SOURCE_PARTITION,
        H_SOURCE_OFFSET,
        H_ATTEMPT,
        H_NOT_BEFORE,
        H_ERROR_KIND,
        H_ERROR,
        H_ERROR_DETAIL,
        H_FAILED_AT,
    }
)
_MAX_DETAIL: Final = 500

TRANSIENT_ERRORS: Final = (
    MlRateLimited,
    MlUnavailable,
    InfrastructureError,
    TokenUnavailable,
    ResourceBusy,
)

RECORDS: Final = Counter(
    "peepers_consumer_records_total",
    "Records consumed, by consumer, source topic and outcome",
    ["consumer", "topic", "outcome"],
)
FAILURES: Final = Counter(
    "peepers_consumer_failures_total",
    "Records parked or dead-lettered, by consumer, source topic, fate and error",
    ["consumer", "topic", "fate", "error"],
)
PROCESSING: Final = Histogram(
    "peepers_consumer_processing_seconds",
    "Time from taking a record to acking it, by consumer and source topic",
    ["consumer", "topic"],
    buckets=LATENCY_BUCKETS_S,
)
# A batch agent's batches: how many records each took, and how long its cycle ran. A
# stop-and-wait batch agent takes at most batch_max records per cycle, so these show
# whether it is capped (full batches, long cycles) or idle (small batches, short ones).
BATCH_CYCLE_BUCKETS_S: Final = (
    *(0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1),
    *(0.15, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0),
)
BATCH_RECORDS: Final = Histogram(
    "peepers_consumer_batch_records",
    "Records per batch a batch agent took, by consumer and agent",
    ["consumer", "agent"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
BATCH_SECONDS: Final = Histogram(
    "peepers_consumer_batch_seconds",
    "A batch agent's cycle, by consumer, agent and phase: process (from taking a batch to "
    "its last record done; the acks follow at once) and wait (from then to taking the next "
    "batch: the acks, the batch window and any wait for records)",
    ["consumer", "agent", "phase"],
    buckets=BATCH_CYCLE_BUCKETS_S,
)


class Fate(StrEnum):
    DONE = "done"
    PARKED = "parked"
    DEAD_LETTERED = "dead_lettered"
    SKIPPED = "skipped"  # a retry-topic record of another consumer


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT_ERRORS)


def error_kind(exc: BaseException) -> str:
    if is_transient(exc):
        return "transient"
    if isinstance(exc, ValidationError):
        return "malformed"
    return "permanent"


@dataclass(frozen=True)
class RetryPolicy:
    """In-place retries first (seconds), then parking rounds (delays in seconds)."""

    in_place_attempts: int = 3
    in_place_initial_s: float = 0.2
    in_place_max_s: float = 2.0
    park_delays_s: Sequence[float] = (10.0, 60.0, 300.0)
    # Parking or dead-lettering needs Kafka; without it the record waits, unacked.
    republish_initial_s: float = 0.5
    republish_max_wait_s: float = 30.0


@dataclass(frozen=True)
class InboundRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: Mapping[str, bytes]

    @classmethod
    def from_kafka(
        cls,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]] | Mapping[str, bytes] | None,
    ) -> InboundRecord:
        pairs = headers.items() if isinstance(headers, Mapping) else (headers or ())
        return cls(topic, partition, offset, key, value or b"", dict(pairs))

    @property
    def source_topic(self) -> str:
        """The topic the record was first consumed from (itself unless it was parked)."""
        raw = self.headers.get(H_SOURCE_TOPIC)
        return raw.decode() if raw else self.topic

    @property
    def attempt(self) -> int:
        """0 on the first delivery; n after n parking rounds."""
        return _int_header(self.headers, H_ATTEMPT, 0)

    @property
    def not_before_ms(self) -> int:
        return _int_header(self.headers, H_NOT_BEFORE, 0)

    @property
    def consumer(self) -> str | None:
        raw = self.headers.get(H_CONSUMER)
        return raw.decode() if raw else None

    def passthrough_headers(self) -> list[tuple[str, bytes]]:
        """The record's own headers (CloudEvents, traceparent), without the policy's."""
        return [(k, v) for k, v in self.headers.items() if k not in _POLICY_HEADERS]


def _int_header(headers: Mapping[str, bytes], name: str, default: int) -> int:
    raw = headers.get(name)
    try:
        return int(raw) if raw else default
    except ValueError:
        return default


Handler = Callable[[InboundRecord], Awaitable[str]]


class RecordProcessor:
    """Runs a handler on one record under the retry policy; never raises for the record.

    The handler returns an outcome label for metrics (``"updated"``, ``"skipped"``, ...).
    """

    def __init__(
        self,
        *,
        consumer: str,
        publisher: EventPublisher,
        policy: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.consumer = consumer
        self._publisher = publisher
        self._policy = policy or RetryPolicy()
        self._clock = clock
        self._timers: dict[str, Histogram] = {}
        self._done: dict[tuple[str, str], Counter] = {}

    async def process(self, record: InboundRecord, handler: Handler) -> Fate:
        fate, outcome = await self._process(record, handler)
        if outcome is not None:
            self.count_done({(record.source_topic, outcome): 1})
        return fate

    async def _process(self, record: InboundRecord, handler: Handler) -> tuple[Fate, str | None]:
        """The record's fate, and the handler's outcome when it succeeded (not counted)."""
        started = time.perf_counter()
        source = record.source_topic
        # Log lines and the events this record causes carry the trace it came with.
        parent = TraceContext.parse(record.headers.get("traceparent", b"").decode("latin-1"))
        trace = bind_trace(parent.child() if parent is not None else TraceContext.new())
        # Errors reported to Sentry (peepers_common.error_tracking) name the seller.
        seller = bind_seller(seller_of_key(record.key))
        try:
            if record.consumer not in (None, self.consumer):
                return Fate.SKIPPED, None
            try:
                outcome = await self._run(record, handler)
            except Exception as exc:
                return await self._fail(record, exc), None
            return Fate.DONE, outcome
        finally:
            self._timer(source).observe(time.perf_counter() - started)
            current_trace.reset(trace)
            current_seller.reset(seller)

    def count_done(self, done: Mapping[tuple[str, str], int]) -> None:
        """Count records done, by (source topic, outcome): once per batch, not per record."""
        for (source, outcome), n in done.items():
            series = self._done.get((source, outcome))
            if series is None:
                series = self._done[(source, outcome)] = RECORDS.labels(
                    self.consumer, source, outcome
                )
            series.inc(n)

    def _timer(self, source: str) -> Histogram:
        # Each series is looked up once: `labels` costs more than the observation.
        timer = self._timers.get(source)
        if timer is None:
            timer = self._timers[source] = PROCESSING.labels(self.consumer, source)
        return timer

    def due_in_s(self, record: InboundRecord) -> float:
        """How long a parked record must still wait before it is retried."""
        return max(0.0, record.not_before_ms / 1000 - self._clock())

    async def _run(self, record: InboundRecord, handler: Handler) -> str:
        """The handler, retried in place on transient failures with exponential backoff.

        A plain loop rather than tenacity's: almost every record succeeds at once, and
        building a retrying object per record cost more than the loop's logic.
        """
        policy = self._policy
        attempt = 1
        while True:
            try:
                return await handler(record)
            except Exception as exc:
                if attempt >= policy.in_place_attempts or not is_transient(exc):
                    raise
            await asyncio.sleep(_backoff_s(policy, attempt))
            attempt += 1

    async def _fail(self, record: InboundRecord, exc: Exception) -> Fate:
        kind = error_kind(exc)
        parked_rounds = record.attempt
        if kind == "transient" and parked_rounds < len(self._policy.park_delays_s):
            delay_s = self._policy.park_delays_s[parked_rounds]
            await self._republish(
                retry_topic(record.source_topic),
                record,
                exc,
                kind,
                attempt=parked_rounds + 1,
                not_before_ms=int((self._clock() + delay_s) * 1000),
            )
            fate = Fate.PARKED
        else:
            await self._republish(
                dlq_topic(record.source_topic),
                record,
                exc,
                kind,
                attempt=parked_rounds,
                not_before_ms=0,
            )
            fate = Fate.DEAD_LETTERED
        FAILURES.labels(self.consumer, record.source_topic, fate.value, type(exc).__name__).inc()
        log.warning(
            "record %s[%d]@%d %s: %s: %s",
            record.topic,
            record.partition,
            record.offset,
            fate.value,
            type(exc).__name__,
            exc,
        )
        return fate

    async def _republish(
        self,
        topic: str,
        record: InboundRecord,
        exc: Exception,
        kind: str,
        *,
        attempt: int,
        not_before_ms: int,
    ) -> None:
        source_partition = record.headers.get(H_SOURCE_PARTITION, str(record.partition).encode())
        source_offset = record.headers.get(H_SOURCE_OFFSET, str(record.offset).encode())
        headers: Headers = [
            *record.passthrough_headers(),
            (H_CONSUMER, self.consumer.encode()),
            (H_SOURCE_TOPIC, record.source_topic.encode()),
            (H_SOURCE_PARTITION, source_partition),
            (H_SOURCE_OFFSET, source_offset),
            (H_ATTEMPT, str(attempt).encode()),
            (H_NOT_BEFORE, str(not_before_ms).encode()),
            (H_ERROR_KIND, kind.encode()),
            (H_ERROR, type(exc).__name__.encode()),
            (H_ERROR_DETAIL, str(exc)[:_MAX_DETAIL].encode("utf-8", "replace")),
            (H_FAILED_AT, str(int(self._clock() * 1000)).encode()),
        ]
        async for retrying in AsyncRetrying(
            retry=retry_if_exception(lambda e: isinstance(e, InfrastructureError)),
            wait=wait_exponential_jitter(
                multiplier=self._policy.republish_initial_s,
                max=self._policy.republish_max_wait_s,
                jitter=self._policy.republish_initial_s,
            ),
        ):
            with retrying:
                await self._publisher.publish(
                    topic, key=record.key or b"", value=record.value, headers=headers
                )


def _backoff_s(policy: RetryPolicy, attempt: int) -> float:
    """Before in-place attempt ``attempt + 1``: doubling from the initial wait, jittered."""
    initial = policy.in_place_initial_s
    jitter = random.uniform(0, initial)  # noqa: S311 - spreading retries, not a secret
    return min(initial * 2.0 ** (attempt - 1) + jitter, policy.in_place_max_s)


def record_key(record: InboundRecord) -> bytes | None:
    return record.key


# The outcome counted for a record left to a newer one of its key (`process_batch`).
COALESCED = "coalesced"
# What a record asks its handler to read (`process_batch`'s ``coalesce``).
Identity = Callable[[InboundRecord], Hashable]


async def process_batch(
    processor: RecordProcessor,
    records: Sequence[InboundRecord],
    handler: Handler,
    *,
    key: Callable[[InboundRecord], object] = record_key,
    coalesce: Identity | None = None,
) -> list[Fate]:
    """Process a batch concurrently across keys, in order within each key.

    Agents stay at concurrency 1 (faust issue #606) and take a batch with Faust's
    ``take_events``, which acks the batch only after this returns: nothing is acked
    before it is processed, and one key's records keep their order, while the network
    waits of different keys (ML, Redis, Kafka acks) overlap. ``key`` names what must
    not be handled twice at once (the record key by default; catalog uses the item,
    which ``items`` and ``items_prices`` records share).

    With ``coalesce``, a key's records are handled newest first, and a record asking for
    what a newer one of the batch was handled for (the same ``coalesce(record)``) is done
    with it, unhandled (counted as ``coalesced``). That is for ML's notifications only:
    each says no more than "this resource changed", and its handler reads the resource as
    it is now, so one read after the newest notification arrived covers every older one.
    A backlog (after an outage, ML's retries) holds many of one order or item, each an ML
    call saved. A newer record covers older ones once handled or parked (its retry reads
    the resource later still), not when it failed for good: then the one before it is
    handled, so coalescing never leaves a change unhandled. A record ``coalesce`` cannot
    read (malformed) is handled alone, and so dead-lettered as without coalescing.
    """
    by_key: dict[object, list[int]] = {}
    for index, record in enumerate(records):
        by_key.setdefault(key(record), []).append(index)
    fates: list[Fate] = [Fate.DONE] * len(records)
    done: dict[tuple[str, str], int] = {}

    def count(record: InboundRecord, outcome: str) -> None:
        series = (record.source_topic, outcome)
        done[series] = done.get(series, 0) + 1

    async def handle(index: int) -> Fate:
        fates[index], outcome = await processor._process(records[index], handler)
        if outcome is not None:
            count(records[index], outcome)
        return fates[index]

    async def one_key(indexes: list[int]) -> None:
        for index in indexes:
            await handle(index)

    async def newest_first(indexes: list[int], identity: Identity) -> None:
        covered: set[Hashable] = set()
        for index in reversed(indexes):
            try:
                wanted = identity(records[index])
            except (ValueError, PeepersError):  # malformed: its handler will say so
                await handle(index)
                continue
            if wanted in covered:
                count(records[index], COALESCED)
            elif await handle(index) in (Fate.DONE, Fate.PARKED):
                covered.add(wanted)

    await asyncio.gather(
        *(
            # A key's lone record has nothing to coalesce with: its value is decoded
            # once, by its handler (live, most keys of a batch hold one record).
            one_key(indexes)
            if coalesce is None or len(indexes) == 1
            else newest_first(indexes, coalesce)
            for indexes in by_key.values()
        )
    )
    processor.count_done(done)
    return fates


class BatchCycle:
    """One batch agent's batch metrics: one observation of each per batch, not per record."""

    def __init__(
        self, consumer: str, agent: str, *, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self._records = BATCH_RECORDS.labels(consumer, agent)
        self._process = BATCH_SECONDS.labels(consumer, agent, "process")
        self._wait = BATCH_SECONDS.labels(consumer, agent, "wait")
        self._clock = clock
        self._done_at: float | None = None  # the end of the previous batch

    def taken(self, records: int) -> float:
        """A batch of ``records`` was taken; returns the time to pass to `processed`."""
        now = self._clock()
        if self._done_at is not None:
            self._wait.observe(now - self._done_at)
        self._records.observe(records)
        return now

    def processed(self, taken_at: float) -> None:
        now = self._done_at = self._clock()
        self._process.observe(now - taken_at)


async def process_batches(
    processor: RecordProcessor,
    batches: AsyncIterable[Sequence[InboundRecord]],
    handler: Handler,
    cycle: BatchCycle,
    *,
    key: Callable[[InboundRecord], object] = record_key,
    coalesce: Identity | None = None,
) -> None:
    """A batch agent's loop: each batch through `process_batch`, timed by ``cycle``."""
    async for records in batches:
        taken_at = cycle.taken(len(records))
        await process_batch(processor, records, handler, key=key, coalesce=coalesce)
        cycle.processed(taken_at)


async def sleep_until_due(processor: RecordProcessor, record: InboundRecord) -> None:
    """Hold a parked record until its ``not-before`` time (retry agents call this)."""
    delay = processor.due_in_s(record)
    if delay > 0:
        await asyncio.sleep(delay)
