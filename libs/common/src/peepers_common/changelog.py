"""Changelogs: state only Peepers holds, kept in a compacted Kafka topic with a Redis view.

ARCHITECTURE.md ("State: what may be lost, and what may not") splits state in two. Mirrors
of ML live in Redis and are rebuilt from ML. State nobody else holds (seller
authorizations, the email ledger, tickets, answer idempotency keys) is written first to
a compacted topic ``peepers.<service>.<what>.changelog``, then to its Redis view, and the
view is restored from the topic whenever it is found missing.

The API, all of it::

    changelog = Changelog(kafka, topic, view=..., marker=RedisViewMarker(redis, ns, "what"))
    async with changelog:                  # producer up; restore (in the background) if needed
        await changelog.write(key, value)  # acks=all, keyed by entity; None is a tombstone
        await changelog.available()        # wait for a running restore (cheap: no I/O)
        await changelog.verify()           # on a read miss: restore if the view was lost
        changelog.ready, changelog.progress  # for /readyz

- **Writes.** `Changelog.write` returns once every in-sync replica holds the record
  (``acks=all``, idempotent producer). The caller writes the view only after it: the
  record is durable before anyone acts on it.
- **The view.** A `ChangelogView` applies records in order. It must be idempotent and
  monotonic: a record never replaces a newer state of its entity, because a restore may
  run while live writes land on the view. Auth's view orders an entity's records by
  their version, then by offset (a key's records share a partition, so offsets order
  them), and keeps both per entity.
- **Noticing a loss.** `RedisViewMarker` keeps an epoch key in the service's namespace,
  set when a restore completes. `FLUSHALL`, a Redis restart without persistence or a new
  node all lose it. The changelog checks it at start, every ``check_every_s``, and when
  the service calls `verify` after a read that found nothing; after a failed restore
  (Kafka or Redis down), every 2 s at most until one succeeds.
- **Restoring.** Reads every partition from its start up to the end offsets captured
  when the restore began, applying each fetched batch, then sets the marker, but only if
  the view was not lost again meanwhile (a "restoring" key written at the start must
  still be there). `ready` is false until then; progress goes to the log every second and
  to ``peepers_changelog_*`` metrics. Replicas that notice the same loss restore side by
  side; the view's monotonic apply makes that harmless.

Why not Faust tables. A Faust table is exactly this (a compacted changelog topic plus a
local store restored at start), and Faust services may use one where their state is
keyed like the topic they consume (the table's partitions follow the agent's). It does
not fit here: auth and ingest are aiohttp services that must not install Faust
(STYLE.md 6); a table is readable only by the worker that holds its partition, while
every auth replica must answer for every seller; and the views are Redis, shared by the
replicas and by operators' tools, not a per-worker RocksDB or memory store. So the core
uses aiokafka and redis only, and works the same from an aiohttp cleanup context or a
Faust ``Service.on_start``.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from contextlib import aclosing, suppress
from dataclasses import dataclass
from typing import Final, NamedTuple, Protocol

import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge

from peepers_common.errors import ConfigurationError, InfrastructureError, PublishError
from peepers_common.kafka import Published, batches_to, end_offsets
from peepers_common.lifecycle import AsyncResource
from peepers_common.namespaces import Namespace, redis_errors
from peepers_common.settings import KafkaSettings

log = logging.getLogger(__name__)

RESTORES: Final = Counter(
    "peepers_changelog_restores_total",
    "Restores of a Redis view from its changelog, by topic and outcome",
    ["topic", "outcome"],
)
RESTORED_RECORDS: Final = Counter(
    "peepers_changelog_restored_records_total",
    "Changelog records applied to a Redis view by restores, by topic",
    ["topic"],
)
RESTORING: Final = Gauge(
    "peepers_changelog_restoring",
    "1 while this process restores the topic's Redis view, else 0",
    ["topic"],
)

# A restore that lost its view again before it finished starts over, this many times at
# most; the periodic check takes over after that.
_RESTORE_ATTEMPTS: Final = 3
_PROGRESS_EVERY_S: Final = 1.0
_CLOSE_WAIT_S: Final = 5.0
_RETRY_S: Final = 2.0


class ChangelogEntry(NamedTuple):
    """One record read back from a changelog; ``value`` None is a tombstone."""

    key: bytes
    value: bytes | None
    partition: int
    offset: int


class ChangelogView(Protocol):
    """Where a changelog's records land: the service's Redis view of its state."""

    async def apply(self, entries: Sequence[ChangelogEntry]) -> None:
        """Apply ``entries`` in order (a tombstone deletes its key's view entry).

        Must be idempotent and never replace a newer state of an entity with an older
        one: restores run beside live writes and beside other replicas' restores.
        """
        ...


class ViewMarker(Protocol):
    """The view's epoch marker: present only while the view is known to be complete."""

    async def present(self) -> bool: ...

    async def begin(self) -> str:
        """Note that a restore starts; returns the epoch it will set."""
        ...

    async def complete(self, epoch: str, records: int) -> bool:
        """Set the marker, unless the view was lost since `begin` (then False)."""
        ...


class RedisViewMarker:
    """`ViewMarker` as two keys in the service's namespace.

    ``<ns>changelog:<name>:epoch`` (JSON: epoch, restored_at, records) marks a complete
    view; ``<ns>changelog:<name>:restoring`` is set when a restore starts, so a view lost
    during the restore is not marked complete.
    """

    _COMPLETE_LUA: Final = """
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""

    def __init__(self, client: aioredis.Redis, namespace: Namespace, name: str) -> None:
        self._client = client
        self.epoch_key = namespace.key("changelog", name, "epoch")
        self._restoring_key = namespace.key("changelog", name, "restoring")
        self._complete = client.register_script(self._COMPLETE_LUA)

    async def present(self) -> bool:
        with redis_errors("checking the view's epoch marker"):
            return bool(await self._client.exists(self.epoch_key))

    async def begin(self) -> str:
        epoch = uuid.uuid4().hex
        with redis_errors("marking a restore"):
            await self._client.set(self._restoring_key, epoch)
        return epoch

    async def complete(self, epoch: str, records: int) -> bool:
        body = json.dumps({"epoch": epoch, "restored_at": time.time(), "records": records})
        with redis_errors("setting the view's epoch marker"):
            done = await self._complete(keys=[self.epoch_key, self._restoring_key], args=[body])
        return bool(done)


class ViewState(enum.Enum):
    STARTING = "starting"
    RESTORING = "restoring"
    READY = "ready"
    # The last restore failed (Kafka or Redis); the next check retries it.
    FAILED = "failed"
    CLOSED = "closed"


@dataclass
class RestoreProgress:
    """What the current (or last) restore has done, for logs and ``/readyz``."""

    records: int = 0
    total: int = 0
    started_at: float = 0.0
    finished_at: float | None = None

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "records": self.records,
            "total": self.total,
            "seconds": round((self.finished_at or time.monotonic()) - self.started_at, 3),
        }


class Changelog(AsyncResource):
    """One compacted changelog topic and the Redis view restored from it.

    Args:
        kafka: where the topic lives.
        topic: the changelog topic (from ``peepers_common.topics``; tests pass their own).
        view: applies records to the Redis view.
        marker: the view's epoch marker.
        check_every_s: how often the marker is checked besides `verify`.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        *,
        view: ChangelogView,
        marker: ViewMarker,
        check_every_s: float = 10.0,
    ) -> None:
        if check_every_s <= 0:
            msg = f"check_every_s must be positive (got {check_every_s})"
            raise ConfigurationError(msg)
        self.topic = topic
        self._kafka = kafka
        self._view = view
        self._marker = marker
        self._check_every_s = check_every_s
        self._producer = AIOKafkaProducer(
            bootstrap_servers=kafka.bootstrap_servers,
            client_id=kafka.client_id,
            acks="all",
            enable_idempotence=True,
            request_timeout_ms=kafka.request_timeout_ms,
        )
        self._state = ViewState.STARTING
        self._restoring: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.progress = RestoreProgress()

    @property
    def state(self) -> ViewState:
        return self._state

    @property
    def ready(self) -> bool:
        return self._state is ViewState.READY

    async def start(self) -> None:
        """Start the producer, then check the view (restoring it in the background)."""
        try:
            await self._producer.start()
        except KafkaError as exc:
            await self._producer.stop()
            msg = f"cannot connect to Kafka at {self._kafka.bootstrap_servers}: {exc!r}"
            raise PublishError(msg) from exc
        self._watcher = asyncio.create_task(self._watch(), name=f"changelog-watch:{self.topic}")

    async def aclose(self) -> None:
        if self._state is ViewState.CLOSED:
            return
        self._state = ViewState.CLOSED
        if self._restoring is not None:
            # A restore cancelled inside aiokafka's client start leaks its connections:
            # let a short one finish first.
            await asyncio.wait({self._restoring}, timeout=_CLOSE_WAIT_S)
        for task in (self._watcher, self._restoring):
            if task is not None:
                task.cancel()
                # Bounded: a restore cancelled inside aiokafka's consumer stop can hang
                # there, and a service's shutdown must not hang with it.
                done, _ = await asyncio.wait({task}, timeout=_CLOSE_WAIT_S)
                if not done:
                    log.warning(
                        "changelog %s: %s did not stop within %.0f s; left behind",
                        self.topic,
                        task.get_name(),
                        _CLOSE_WAIT_S,
                    )
                elif not task.cancelled():
                    with suppress(Exception):
                        task.result()
        await self._producer.stop()

    async def write(self, key: str | bytes, value: bytes | None) -> Published:
        """Append one record (None: a tombstone); returns once every in-sync replica has it.

        Raises:
            PublishError: Kafka did not acknowledge it.
        """
        raw_key = key.encode() if isinstance(key, str) else key
        try:
            sent = await self._producer.send_and_wait(self.topic, key=raw_key, value=value)
        except KafkaError as exc:
            msg = f"Kafka did not acknowledge a record for {self.topic}: {exc!r}"
            raise PublishError(msg) from exc
        return Published(self.topic, sent.partition, sent.offset)

    async def available(self) -> None:
        """Return when no restore is running (wait for one that is).

        Raises:
            InfrastructureError: the restore waited for failed.
        """
        task = self._restoring
        if task is not None:
            await asyncio.shield(task)

    async def verify(self) -> bool:
        """Restore the view if its marker is gone; True when a restore ran (re-read then).

        Call it when a read finds nothing where something may have been.

        Raises:
            InfrastructureError: Kafka or Redis failed during the check or the restore.
        """
        if self._restoring is None and await self._marker.present():
            if self._state in (ViewState.STARTING, ViewState.FAILED):
                self._state = ViewState.READY  # complete already, or another replica restored it
            return False
        if self._restoring is None:
            self._restoring = asyncio.create_task(
                self._restore(), name=f"changelog-restore:{self.topic}"
            )
            self._restoring.add_done_callback(self._restore_done)
        await self.available()
        return True

    def _restore_done(self, task: asyncio.Task[None]) -> None:
        self._restoring = None
        if task.cancelled() or self._state is ViewState.CLOSED:
            return
        if task.exception() is not None:
            self._state = ViewState.FAILED

    async def _watch(self) -> None:
        while True:
            try:
                await self.verify()
            except Exception as exc:  # logged by the restore; the next round retries
                log.warning("changelog %s: the view is not restored yet: %r", self.topic, exc)
            # Not ready (a failed restore): try again sooner than the routine check.
            await asyncio.sleep(
                self._check_every_s if self.ready else min(self._check_every_s, _RETRY_S)
            )

    async def _restore(self) -> None:
        self._state = ViewState.RESTORING
        RESTORING.labels(self.topic).set(1)
        try:
            for _ in range(_RESTORE_ATTEMPTS):
                if await self._restore_once():
                    self._state = ViewState.READY
                    RESTORES.labels(self.topic, "restored").inc()
                    return
                log.warning("changelog %s: the view was lost during its restore; again", self.topic)
            msg = f"the view of {self.topic} kept being lost during {_RESTORE_ATTEMPTS} restores"
            raise InfrastructureError(msg)
        except Exception:
            RESTORES.labels(self.topic, "failed").inc()
            log.exception("restore of %s failed; the next check retries it", self.topic)
            raise
        finally:
            RESTORING.labels(self.topic).set(0)

    async def replay(self) -> int:
        """Apply the whole topic to the view again, up to its end now; the records read.

        For a view that may have missed a logged record (its compare-and-set failed, or
        Redis did not answer, after the record was durable): the view's monotonic apply
        keeps whatever is newer. The epoch marker is not touched.

        Raises:
            InfrastructureError: Kafka or Redis failed.
        """
        ends = await end_offsets(self._kafka, [self.topic])
        return await self._apply_to(ends, RestoreProgress(total=sum(ends.values())))

    async def _restore_once(self) -> bool:
        epoch = await self._marker.begin()
        ends = await end_offsets(self._kafka, [self.topic])
        progress = self.progress = RestoreProgress(
            total=sum(ends.values()), started_at=time.monotonic()
        )
        log.info("changelog %s: restoring the view (up to %d offsets)", self.topic, progress.total)
        await self._apply_to(ends, progress)
        if not await self._marker.complete(epoch, progress.records):
            return False
        progress.finished_at = time.monotonic()
        log.info(
            "changelog %s: view restored, %d records in %.2f s",
            self.topic,
            progress.records,
            progress.finished_at - progress.started_at,
        )
        return True

    async def _apply_to(self, ends: Mapping[TopicPartition, int], progress: RestoreProgress) -> int:
        logged = time.monotonic()
        async with aclosing(batches_to(self._kafka, ends)) as batches:
            async for batch in batches:
                await self._view.apply(
                    [
                        ChangelogEntry(
                            record.key or b"", record.value, record.partition, record.offset
                        )
                        for record in batch
                    ]
                )
                progress.records += len(batch)
                RESTORED_RECORDS.labels(self.topic).inc(len(batch))
                if time.monotonic() - logged >= _PROGRESS_EVERY_S:
                    logged = time.monotonic()
                    log.info(
                        "changelog %s: restored %d records (of up to %d offsets)",
                        self.topic,
                        progress.records,
                        progress.total,
                    )
        return progress.records
