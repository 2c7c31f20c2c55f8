"""The consumer kit: what every Faust worker of Peepers shares (``peepers-common[faust]``).

A worker is a `ConsumerKit` (the Faust app, its raw topics and agents) around one
`ConsumerRuntime` (the worker's own clients, opened before any agent takes a record)::

    class Runtime(ConsumerRuntime):
        async def open(self, stack: AsyncExitStack) -> RecordProcessor:
            ...  # enter clients on `stack`, start the read API
            return processor

    kit = ConsumerKit(settings, consumer="orders")
    runtime = kit.serve(Runtime(settings, loop=kit.app.loop, beacon=kit.app.beacon))
    kit.batch_agent("orders.notifications", topics, runtime.handle, key=...)
    kit.record_agent("orders.sellers", [PEEPERS_SELLERS], runtime.handle_seller)
    kit.retry_agent("orders.retries", [*topics, PEEPERS_SELLERS], runtime.handler_for)
    return kit.app

* **Ready gate.** Every agent waits for the runtime to be started: no record is taken
  before Redis, Kafka and ML clients exist.
* **Raw topics.** Keys and values are bytes; handlers validate them with pydantic
  (STYLE.md 5.5) and never see a ``faust.Record``. ``settings.topic_prefix`` goes before
  every name.
* **The record adapter.** A Faust event becomes a `peepers_common.consuming.InboundRecord`.
* **Agents** run at concurrency 1 (faust issue #606: with more, acks can commit offsets
  of records still in flight, so a crash loses them) and hand each record to the
  runtime's `RecordProcessor` (retry, park, dead-letter). The retry agent skips records
  parked by other consumers and holds each until it is due.
* **Consumer lag.** Once the runtime is open, a `peepers_common.consumer_lag` monitor
  exports the group's lag (records and seconds) on the topics of its batch and record
  agents, every ``lag_interval_s``: the numbers the alert rules and KEDA read. The
  ``.retry`` topics are left out: a parked record waits there on purpose until it is due.
* **Consumer settings** (`ConsumerSettings`): retry policy, batch size, session timeout,
  topic prefix, Redis scope and the consumer group. A service's ``Settings`` subclasses it.

Ingest and auth do not import this module, so they do not install Faust.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AsyncExitStack
from typing import Any, TypeVar, cast

import faust
from aiokafka import AIOKafkaConsumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from mode import Service
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings

from peepers_common.consumer_lag import DEFAULT_INTERVAL_S, ConsumerLagMonitor
from peepers_common.consuming import (
    BatchCycle,
    Handler,
    Identity,
    InboundRecord,
    RecordProcessor,
    RetryPolicy,
    process_batches,
    record_key,
    sleep_until_due,
)
from peepers_common.settings import KafkaSettings
from peepers_common.topics import retry_topic

__all__ = [
    "ConsumerKit",
    "ConsumerRuntime",
    "ConsumerSettings",
    "RetrySettings",
    "inbound_record",
]

R = TypeVar("R", bound="ConsumerRuntime")


class RetrySettings(BaseModel):
    """A failing record is retried in place, then parked (see peepers_common.consuming)."""

    in_place_attempts: int = Field(default=3, ge=1)
    park_delays_s: list[float] = Field(default_factory=lambda: [10.0, 60.0, 300.0])

    def policy(self) -> RetryPolicy:
        return RetryPolicy(
            in_place_attempts=self.in_place_attempts, park_delays_s=tuple(self.park_delays_s)
        )


class ConsumerSettings(BaseSettings):
    """What every consumer's settings hold; a service subclasses it with its env prefix."""

    kafka: KafkaSettings = KafkaSettings()
    retry: RetrySettings = RetrySettings()
    # Notifications are taken in batches of up to this many (waiting at most
    # batch_within_s for one to fill) and processed concurrently across keys.
    # Keep the window short: Faust's take_events waits it out after every batch unless
    # batch_max records arrive, so it adds to each batch's cycle; 20 ms fell behind at
    # 400 changes/s where 5 ms kept up (docs/benchmarks.md, issue 19's paired runs).
    batch_max: int = Field(default=64, ge=1)
    batch_within_s: float = Field(default=0.005, gt=0)
    # How long the broker may hold one of the worker's fetches waiting for data. Faust
    # fixes it at 1,500 ms; with every partition on one broker, a fetch held for idle
    # partitions (the retry topics, a quiet partition) keeps the busy ones from being
    # fetched until it returns, so a worker that caught up stalled up to 1.5 s between
    # batches and held a standing queue: at 400 changes/s webhook -> event p99 1,757 ms
    # at 1,500 against 86 ms at 50 (docs/benchmarks.md, issue 19). An idle worker pays
    # 20 empty fetches a second for it.
    fetch_wait_ms: int = Field(default=50, ge=1)
    # The Kafka consumer group; replicas of one deployment share it.
    app_id: str
    # How fast the group notices a dead replica and hands its partitions on. Kafka's 45 s
    # default leaves a partition unserved that long after a crash; the heartbeat must stay
    # well under the timeout (a third is Kafka's rule of thumb).
    session_timeout_s: float = Field(default=10.0, ge=6.0)
    heartbeat_interval_s: float = Field(default=3.0, gt=0)
    # Prepended to every topic name (tests and side-by-side stacks; empty in production).
    topic_prefix: str = ""
    # Isolates the service's Redis keys under <service>:<scope>: (tests); the rate limiter's too.
    redis_scope: str | None = None
    # How often the group's lag gauges are measured (KEDA polls every 15 s).
    lag_interval_s: float = Field(default=DEFAULT_INTERVAL_S, gt=0)
    # A stop asked by signal ends within this, finished or not (process.StopDeadline):
    # under the 30 s grace period of the smallest worker deployments in deploy/k8s.
    stop_within_s: float = Field(default=25.0, gt=0)
    log_level: str = "INFO"


def inbound_record(event: faust.EventT[bytes]) -> InboundRecord:
    """The record adapter: a Faust event as the processor and handlers see it."""
    message = event.message
    return InboundRecord.from_kafka(
        message.topic,
        message.partition,
        message.offset,
        message.key,
        message.value,
        message.headers,
    )


class ConsumerRuntime(Service):
    """A worker's owned clients, opened in `open` before the agents take records.

    Whatever `open` enters on the stack is closed in reverse when the worker stops.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ready = asyncio.Event()
        self._stack = AsyncExitStack()
        self._processor: RecordProcessor | None = None
        self._lag_monitor: Callable[[], ConsumerLagMonitor] | None = None

    def watch_lag(self, monitor: Callable[[], ConsumerLagMonitor]) -> None:
        """Run ``monitor()`` (the kit's, for its group and topics) once the runtime is open."""
        self._lag_monitor = monitor

    async def open(self, stack: AsyncExitStack) -> RecordProcessor:
        """Open the worker's clients on ``stack``; return the processor agents use."""
        raise NotImplementedError

    async def on_start(self) -> None:
        self._processor = await self.open(self._stack)
        if self._lag_monitor is not None:
            await self._stack.enter_async_context(self._lag_monitor())
        self.ready.set()

    async def on_stop(self) -> None:
        await self._stack.aclose()

    @property
    def processor(self) -> RecordProcessor:
        if self._processor is None:
            msg = f"{type(self).__name__} is not started"
            raise RuntimeError(msg)
        return self._processor


def _transport(fetch_wait_ms: int) -> type[faust_aiokafka.Transport]:
    """Faust's aiokafka transport, its worker consumer's fetch wait set to ``fetch_wait_ms``.

    Faust passes no setting for it (see `ConsumerSettings.fetch_wait_ms`).
    """

    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: faust_aiokafka.Transport) -> AIOKafkaConsumer:
            consumer = super()._create_worker_consumer(transport)
            # aiokafka builds its fetcher from this at start().
            consumer._fetch_max_wait_ms = fetch_wait_ms
            return consumer

    class WaitingConsumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class Transport(faust_aiokafka.Transport):
        Consumer = WaitingConsumer

    return Transport


class ConsumerKit:
    """A Faust app for one consumer group, with raw topics and the three agent shapes."""

    def __init__(self, settings: ConsumerSettings, *, consumer: str, **options: Any) -> None:
        """``consumer`` names the service in parked records; ``options`` go to faust.App."""
        self.settings = settings
        self.consumer = consumer
        self.app = faust.App(
            settings.app_id,
            broker=[f"kafka://{server}" for server in settings.kafka.bootstrap_servers.split(",")],
            store="memory://",
            web_enabled=False,  # the runtime serves the read API, health and metrics
            topic_disable_leader=True,
            consumer_auto_offset_reset="earliest",
            # A long handler (a full sync, a backfill) holds its record for minutes;
            # rebalances must not wait for it.
            stream_wait_empty=False,
            broker_commit_livelock_soft_timeout=3600.0,
            broker_session_timeout=settings.session_timeout_s,
            broker_heartbeat_interval=settings.heartbeat_interval_s,
            **options,
        )
        self.app.transport = _transport(settings.fetch_wait_ms)(
            self.app.conf.broker_consumer, self.app
        )
        self._runtime: ConsumerRuntime | None = None
        # The topics whose lag the group exports (prefixed, in the order agents name them).
        self._lag_topics: dict[str, None] = {}

    def serve(self, runtime: R) -> R:
        """Start ``runtime`` with the app; every agent waits until it is ready."""
        self.app.service(runtime)  # type: ignore[arg-type]  # faust accepts instances too
        self._runtime = runtime
        runtime.watch_lag(self.lag_monitor)
        return runtime

    def lag_monitor(self) -> ConsumerLagMonitor:
        """The group's lag on the topics of its batch and record agents."""
        settings = self.settings
        return ConsumerLagMonitor(
            settings.kafka,
            settings.app_id,
            list(self._lag_topics),
            interval_s=settings.lag_interval_s,
        )

    @property
    def runtime(self) -> ConsumerRuntime:
        if self._runtime is None:
            msg = "ConsumerKit.serve() was not called"
            raise RuntimeError(msg)
        return self._runtime

    def topic(self, *names: str) -> faust.TopicT:
        """Raw-bytes topics, the settings' prefix before each name."""
        return self.app.topic(
            *(self.settings.topic_prefix + name for name in names),
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )

    async def _ready(self) -> RecordProcessor:
        await self.runtime.ready.wait()
        return self.runtime.processor

    def batch_agent(
        self,
        name: str,
        topics: Iterable[str],
        handler: Handler,
        *,
        key: Callable[[InboundRecord], object] = record_key,
        coalesce: Identity | None = None,
    ) -> None:
        """Batches of records, concurrent across ``key`` and in order within one.

        ``coalesce``: what a record asks its handler to read; of a key's records asking
        for the same, only the newest is handled (ML's thin notifications, whose handlers
        read the resource as it is now; see `peepers_common.consuming.process_batch`).
        Each batch's size and cycle go to ``peepers_consumer_batch_*`` (`BatchCycle`).
        """
        settings = self.settings

        async def agent(stream: faust.StreamT[bytes]) -> None:
            processor = await self._ready()
            # StreamT does not declare take_events; the Stream Faust passes has it.
            events = cast(faust.Stream[bytes], stream).take_events(
                settings.batch_max, within=settings.batch_within_s
            )

            async def batches() -> AsyncIterator[Sequence[InboundRecord]]:
                async for batch in events:
                    yield [inbound_record(event) for event in batch]

            cycle = BatchCycle(self.consumer, name)
            await process_batches(processor, batches(), handler, cycle, key=key, coalesce=coalesce)

        self._agent(name, topics, agent, lag=True)

    def record_agent(self, name: str, topics: Iterable[str], handler: Handler) -> None:
        """One record at a time (seller events: each may start a long sync)."""

        async def agent(stream: faust.StreamT[bytes]) -> None:
            processor = await self._ready()
            async for event in stream.events():
                await processor.process(inbound_record(event), handler)

        self._agent(name, topics, agent, lag=True)

    def retry_agent(
        self, name: str, sources: Iterable[str], handler_for: Callable[[str], Handler]
    ) -> None:
        """The ``.retry`` topics of ``sources``: each parked record when due, by its source."""
        consumer = self.consumer

        async def agent(stream: faust.StreamT[bytes]) -> None:
            processor = await self._ready()
            async for event in stream.events():
                record = inbound_record(event)
                if record.consumer != consumer:
                    continue
                await sleep_until_due(processor, record)
                await processor.process(record, handler_for(record.source_topic))

        self._agent(name, [retry_topic(source) for source in sources], agent)

    def _agent(
        self,
        name: str,
        topics: Iterable[str],
        agent: Callable[[faust.StreamT[bytes]], Awaitable[None]],
        *,
        lag: bool = False,
    ) -> None:
        topics = list(topics)
        if lag:
            self._lag_topics.update(dict.fromkeys(self.settings.topic_prefix + t for t in topics))
        self.app.agent(self.topic(*topics), name=name, concurrency=1)(agent)
