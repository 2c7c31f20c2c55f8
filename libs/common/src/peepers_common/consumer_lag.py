"""How far a consumer group is behind: lag in records and in seconds, as Prometheus gauges.

Every consumer runs a `ConsumerLagMonitor` for its own group. It reads the group's
committed offsets (the admin API, as ``kafka-consumer-groups.sh --describe`` does) and the
partitions' end offsets, and for each partition that is behind, the timestamp of the first
record not yet committed. Per topic:

- ``peepers_consumer_lag_records``: records not yet committed, summed over partitions;
- ``peepers_consumer_lag_seconds``: age of the oldest record not yet committed, the largest
  over partitions (0 when the group has caught up).

Lag in seconds is measured, not estimated from a rate: a group that stopped committing
ages as fast as the clock, whatever the traffic, which is what
``PeepersConsumerStalled`` looks for. Every replica reports the whole group (not only its
own partitions), so a partition whose owner died still shows; the alert rules and KEDA
take the ``max`` over replicas. A partition the group never committed counts from its
first record (the consumers start at ``earliest``).

When Kafka does not answer, the gauges keep their last values and a warning is logged: a
broker outage has its own alerts, and a lag that drops to zero would hide a stalled group.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from prometheus_client import Gauge

from peepers_common.errors import InfrastructureError
from peepers_common.lifecycle import AsyncResource
from peepers_common.settings import KafkaSettings

log = logging.getLogger(__name__)

LAG_RECORDS: Final = Gauge(
    "peepers_consumer_lag_records",
    "Records not yet committed by the consumer group, summed over the topic's partitions",
    ["group", "topic"],
)
LAG_SECONDS: Final = Gauge(
    "peepers_consumer_lag_seconds",
    "Age of the oldest record the consumer group has not committed, by topic (0: caught up)",
    ["group", "topic"],
)
DEFAULT_INTERVAL_S: Final = 15.0
# One record per lagging partition is all a measurement reads: fetch little.
_FETCH_BYTES: Final = 64 * 1024


@dataclass(frozen=True)
class TopicLag:
    topic: str
    records: int
    seconds: float


class ConsumerLagMonitor(AsyncResource):
    """Measures ``group``'s lag on ``topics`` every ``interval_s`` and sets the gauges."""

    def __init__(
        self,
        kafka: KafkaSettings,
        group: str,
        topics: Sequence[str],
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not topics:
            msg = "a lag monitor needs at least one topic"
            raise ValueError(msg)
        self._kafka = kafka
        self._group = group
        self._topics = list(topics)
        self._interval_s = interval_s
        self._clock = clock
        self._admin: AIOKafkaAdminClient | None = None
        self._reader: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def group(self) -> str:
        return self._group

    @property
    def topics(self) -> list[str]:
        return list(self._topics)

    async def start(self) -> None:
        """Connects, then measures in the background; a Kafka that is away is retried."""
        self._admin = AIOKafkaAdminClient(
            bootstrap_servers=self._kafka.bootstrap_servers,
            client_id=f"{self._kafka.client_id}-lag",
            request_timeout_ms=self._kafka.request_timeout_ms,
        )
        # No group: it only reads the first uncommitted record of a partition, and commits
        # nothing (it must not move the offsets it measures).
        self._reader = AIOKafkaConsumer(
            bootstrap_servers=self._kafka.bootstrap_servers,
            client_id=f"{self._kafka.client_id}-lag",
            group_id=None,
            enable_auto_commit=False,
            max_partition_fetch_bytes=_FETCH_BYTES,
            fetch_max_bytes=_FETCH_BYTES,
            request_timeout_ms=self._kafka.request_timeout_ms,
        )
        try:
            await self._admin.start()
            await self._reader.start()
        except KafkaError as exc:
            await self.aclose()
            msg = f"the lag monitor of {self._group} cannot reach Kafka: {exc!r}"
            raise InfrastructureError(msg) from exc
        self._task = asyncio.create_task(self._run(), name=f"consumer-lag-{self._group}")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._reader is not None:
            await self._reader.stop()
            self._reader = None
        if self._admin is not None:
            await self._admin.close()
            self._admin = None

    async def _run(self) -> None:
        while True:
            try:
                self.export(await self.measure())
            except InfrastructureError as exc:
                log.warning("consumer lag of %s not measured: %s", self._group, exc)
            await asyncio.sleep(self._interval_s)

    def export(self, lags: Iterable[TopicLag]) -> None:
        for lag in lags:
            LAG_RECORDS.labels(self._group, lag.topic).set(lag.records)
            LAG_SECONDS.labels(self._group, lag.topic).set(lag.seconds)

    async def measure(self) -> list[TopicLag]:
        """The group's lag on each topic, now.

        Raises:
            InfrastructureError: Kafka did not answer, or a topic does not exist.
        """
        admin, reader = self._admin, self._reader
        if admin is None or reader is None:
            msg = "the lag monitor is not started"
            raise RuntimeError(msg)
        try:
            partitions = await self._partitions(admin)
            committed = await admin.list_consumer_group_offsets(self._group, partitions=partitions)
            ends: dict[TopicPartition, int] = await reader.end_offsets(partitions)
            starts: dict[TopicPartition, int] = await reader.beginning_offsets(partitions)
            # The group resumes from its commit; with none, from the first record there is.
            resume = {
                tp: max(committed[tp].offset, starts[tp])
                if tp in committed and committed[tp].offset >= 0
                else starts[tp]
                for tp in partitions
            }
            behind = {tp: offset for tp, offset in resume.items() if offset < ends[tp]}
            oldest = await self._timestamps(reader, behind) if behind else {}
        except KafkaError as exc:
            msg = f"cannot read the offsets of {self._group}: {exc!r}"
            raise InfrastructureError(msg) from exc
        now = self._clock()
        return [
            TopicLag(
                topic,
                records=sum(ends[tp] - resume[tp] for tp in partitions if tp.topic == topic),
                seconds=max(
                    (max(0.0, now - oldest[tp]) for tp in oldest if tp.topic == topic),
                    default=0.0,
                ),
            )
            for topic in self._topics
        ]

    async def _partitions(self, admin: AIOKafkaAdminClient) -> list[TopicPartition]:
        partitions: list[TopicPartition] = []
        for described in await admin.describe_topics(self._topics):
            found = [
                TopicPartition(described["topic"], p["partition"]) for p in described["partitions"]
            ]
            if described.get("error_code") or not found:
                msg = f"topic {described['topic']} does not exist (run peepers-topics ensure)"
                raise InfrastructureError(msg)
            partitions += found
        return partitions

    async def _timestamps(
        self, reader: AIOKafkaConsumer, positions: dict[TopicPartition, int]
    ) -> dict[TopicPartition, float]:
        """Unix time of the first record at or after each position.

        A compacted or transactional gap can put that record past the position.
        """
        reader.assign(list(positions))
        for tp, offset in positions.items():
            reader.seek(tp, offset)
        found: dict[TopicPartition, float] = {}
        try:
            async with asyncio.timeout(self._kafka.request_timeout_ms / 1000):
                while len(found) < len(positions):
                    waiting = [tp for tp in positions if tp not in found]
                    batch = await reader.getmany(*waiting, timeout_ms=500)
                    for tp, records in batch.items():
                        if records:
                            found[tp] = records[0].timestamp / 1000
        except TimeoutError:
            missing = sorted(f"{tp.topic}[{tp.partition}]" for tp in positions if tp not in found)
            msg = f"the first uncommitted records of {missing} did not arrive in time"
            raise InfrastructureError(msg) from None
        finally:
            reader.unsubscribe()
        return found
