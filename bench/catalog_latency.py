"""Webhook-to-cache latency of the catalog at a fixed rate of item changes, ML fetch included.

Real processes on loopback: the sandbox (one seller with ``--pool`` items, no notifier),
ingest (``python -m peepers_ingest``, acks=all) and the catalog worker (``python -m
peepers_catalog worker``), on scratch topics and a scratch Redis scope; tokens come from
a stand-in broker in this process (see bench.catalog_support). The worker first syncs
the seller (``seller.connected``), so every item is cached before the clock starts.

Then, for ``--duration`` seconds at ``--rate`` changes a second (open loop, on
schedule): change the price of the next item of the pool at the sandbox (admin event,
price = 100000 + sequence number, so each change is recognisable), and at t0 POST the
``items_prices`` webhook to ingest. The worker fetches the item from the sandbox, writes
the cache (compare-and-set, the event kept in its outbox) and then publishes
``item.price_changed`` on ``<prefix>peepers.catalog.v1``. This process consumes that
topic, with no Redis polling; both ends are at or after the cache write:

* t1 (event made) = the record's Kafka timestamp, set when the worker hands it to its
  producer, right after the cache write;
* t1 (event read) = when this process receives the record (it adds the ack and the
  consumer's fetch): the upper bound the target is judged on.

Baseline, in the same run and at the same rate: GET /items/{id} from the sandbox alone.

Then the **raw baseline** (``--backlog N``, 0 to skip): N more price changes are made at
the sandbox and their ``items_prices`` notifications put straight on the worker's topic
at once, and the time the worker takes to drain them (its /metrics) gives its
saturation throughput. Then a plain aiokafka loop in this process (`raw_loop`: no Faust,
no consumer kit, no limiter, no handlers) takes the same N records from the same
offsets with its own group and does the same work per record, records of different
items concurrently within a fetched batch: GET /items/{id} from the sandbox, one Redis
write (HSET of the body and version), one acks=all event; it commits per batch. The
worker's throughput is reported as a ratio to the loop's (target >= 0.5).

    uv run python -m bench.catalog_latency [--rate 200] [--duration 20] [--pool 5000] \
        [--backlog 4000]

``--workers N`` runs N worker replicas in one consumer group (the items topics have 6
partitions); ``--keep-logs DIR`` keeps the processes' logs and every change's times;
``--worker-env CATALOG_NAME=VALUE`` (repeatable) sets a worker setting, e.g. the batch
window ``CATALOG_BATCH_WITHIN_S`` or ``CATALOG_BATCH_MAX`` (the workers' environment is
built by the bench: the shell's ``CATALOG_*`` variables do not reach them);
``--profile FILE`` samples the first worker with py-spy during the timed phase, and
during the backlog drain into ``FILE`` with ``.backlog`` before its suffix.

The report also gives the worker's batches, live and draining the backlog, from its
``peepers_consumer_batch_*`` histograms: how many, their mean size, the two phases of
their cycle (take -> last record done; then to the next take: acks, window, waiting for
records) at p50 / p99, and the throughput full batches would allow at the median cycle.

Needs the stack (``scripts/stack up``) with ``.stack/env`` sourced.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from redis.exceptions import RedisError

from bench.catalog_support import (
    cleanup_scope,
    connect_seller,
    kafka_settings,
    log,
    ml_webhook,
    percentile,
    run_then_delete_topics,
    sandbox_process,
    seller_item_ids,
    sync_state,
    token_broker,
    wait_ready,
    worker_run,
)
from bench.ingest import PATH, cpu_seconds, start_ingest
from peepers_catalog.settings import Settings as CatalogSettings
from peepers_common.kafka import AIOKafkaEventPublisher, end_offsets
from peepers_common.namespaces import connect_redis
from peepers_common.notifications import Notification, cloudevent_headers, encode_value
from peepers_common.topics import PEEPERS_CATALOG, notification_topic
from peepers_devstack.metrics import Scrape
from peepers_sandbox.client import SandboxAdmin
from tests.integration.catalog.worker import WorkerRun, catalog_topics, worker_process
from tests.integration.ingest.support import free_port
from tests.support import unique, wait_until

PRICE_BASE: Final = 100_000
TARGET_P99_MS: Final = 250.0
TARGET_RAW_RATIO: Final = 0.5
PRICES_TOPIC: Final = notification_topic("items_prices")


def webhook(run: str, seq: int, seller: int, item_id: str) -> bytes:
    return ml_webhook(f"{run}-{seq}", "items_prices", f"/items/{item_id}/prices", seller)


async def post_webhook(http: aiohttp.ClientSession, url: str, body: bytes) -> bool:
    """POST an ML webhook body to ingest; whether ingest accepted it (200)."""
    async with http.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
        await response.read()
        return response.status == 200


def seq_of(price: str | float, total: int) -> int | None:
    """The change a ``new_price`` announces, or None for a price this run did not set."""
    seq = int(Decimal(str(price))) - PRICE_BASE
    return seq if 0 <= seq < total else None


def bucket_quantile(buckets: dict[float, float], q: float) -> float:
    """Prometheus's ``histogram_quantile``: ``buckets`` are cumulative counts by upper bound,
    interpolated linearly within the bucket the rank falls in; NaN without samples."""
    bounds = sorted(buckets)
    if not bounds or not buckets[bounds[-1]]:
        return math.nan
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank and count > below:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


@dataclass(frozen=True)
class Batches:
    """The worker's batch agent between two scrapes (``peepers_consumer_batch_*``)."""

    batches: float = 0.0
    records: float = 0.0
    # Cumulative counts by upper bound (s): take -> done, and done -> the next take.
    process: dict[float, float] = field(default_factory=dict)
    wait: dict[float, float] = field(default_factory=dict)
    process_s: float = 0.0
    wait_s: float = 0.0

    @classmethod
    def scrape(cls, metrics: Scrape) -> Batches:
        def buckets(phase: str) -> dict[float, float]:
            by_le = metrics.by("peepers_consumer_batch_seconds_bucket", "le", phase=phase)
            return {float(le): count for le, count in by_le.items()}

        return cls(
            batches=metrics.total("peepers_consumer_batch_records_count"),
            records=metrics.total("peepers_consumer_batch_records_sum"),
            process=buckets("process"),
            wait=buckets("wait"),
            process_s=metrics.total("peepers_consumer_batch_seconds_sum", phase="process"),
            wait_s=metrics.total("peepers_consumer_batch_seconds_sum", phase="wait"),
        )

    def plus(self, other: Batches, sign: float = 1.0) -> Batches:
        def add(a: dict[float, float], b: dict[float, float]) -> dict[float, float]:
            return {k: a.get(k, 0.0) + sign * b.get(k, 0.0) for k in a.keys() | b.keys()}

        return Batches(
            self.batches + sign * other.batches,
            self.records + sign * other.records,
            add(self.process, other.process),
            add(self.wait, other.wait),
            self.process_s + sign * other.process_s,
            self.wait_s + sign * other.wait_s,
        )

    def report(self, batch_max: int) -> str:
        """Mean size, the cycle's phases (p50 / p99 ms) and the cap they put on throughput.

        A stop-and-wait batch agent takes at most ``batch_max`` records per cycle: with its
        median cycle it could take at most ``batch_max`` / (median take -> done + median
        wait) a second. Medians, as the first wait of a phase holds the idle time before it.
        """
        waits = self.wait.get(math.inf, 0.0)  # one fewer than batches: none before the first
        if not self.batches or not waits:
            return "no batches"

        def ms(buckets: dict[float, float]) -> str:
            return " / ".join(f"{bucket_quantile(buckets, q) * 1000:,.1f}" for q in (0.5, 0.99))

        cycle_s = bucket_quantile(self.process, 0.5) + bucket_quantile(self.wait, 0.5)
        return (
            f"{self.batches:,.0f} batches of {self.records / self.batches:.1f} records on "
            f"average; take -> done p50 / p99 {ms(self.process)} ms (mean "
            f"{self.process_s / self.batches * 1000:.1f}), then until the next take (acks, "
            f"window, waiting for records) {ms(self.wait)} ms (mean "
            f"{self.wait_s / waits * 1000:.1f}): at most {batch_max / cycle_s:,.0f} records/s "
            f"with full batches of {batch_max}"
        )


@dataclass
class WorkerCosts:
    """Means over the driven changes, from the worker's own /metrics (before and after)."""

    records: float = 0.0
    processing_s: float = 0.0
    fetches: float = 0.0
    fetch_s: float = 0.0
    limiter_s: float = 0.0
    leases: float = 0.0  # round trips to the shared outbound budget
    cpu_s: float = 0.0  # the worker processes' CPU time (from /proc, not /metrics)
    batches: Batches = field(default_factory=Batches)

    @classmethod
    def scrape(cls, text: str) -> WorkerCosts:
        metrics = Scrape.parse(text)

        def prices(name: str) -> float:
            # The consumed topic carries the run's prefix: match it by its end.
            by_topic = metrics.by(name, "topic")
            return sum(v for topic, v in by_topic.items() if topic.endswith("items_prices"))

        return cls(
            records=prices("peepers_consumer_processing_seconds_count"),
            processing_s=prices("peepers_consumer_processing_seconds_sum"),
            fetches=metrics.total("peepers_ml_request_duration_seconds_count", family="items"),
            fetch_s=metrics.total("peepers_ml_request_duration_seconds_sum", family="items"),
            limiter_s=metrics.total("peepers_ml_limiter_wait_seconds_total", family="items"),
            leases=metrics.total("peepers_ml_limiter_leases_total"),
            batches=Batches.scrape(metrics),
        )

    def plus(self, other: WorkerCosts) -> WorkerCosts:
        return WorkerCosts(
            self.records + other.records,
            self.processing_s + other.processing_s,
            self.fetches + other.fetches,
            self.fetch_s + other.fetch_s,
            self.limiter_s + other.limiter_s,
            self.leases + other.leases,
            self.cpu_s + other.cpu_s,
            self.batches.plus(other.batches),
        )

    def minus(self, before: WorkerCosts) -> WorkerCosts:
        return WorkerCosts(
            self.records - before.records,
            self.processing_s - before.processing_s,
            self.fetches - before.fetches,
            self.fetch_s - before.fetch_s,
            self.limiter_s - before.limiter_s,
            self.leases - before.leases,
            self.cpu_s - before.cpu_s,
            self.batches.plus(before.batches, -1.0),
        )


async def scrape(http: aiohttp.ClientSession, run: WorkerRun) -> WorkerCosts:
    async with http.get(f"{run.url}/metrics") as response:
        return WorkerCosts.scrape(await response.text())


@dataclass
class Changes:
    total: int
    pool: int
    sent_at: dict[int, float] = field(default_factory=dict)  # seq -> t0 (epoch s)
    queued_at: dict[int, float] = field(default_factory=dict)  # seq -> notification's
    made_at: dict[int, float] = field(default_factory=dict)  # seq -> Kafka timestamp
    read_at: dict[int, float] = field(default_factory=dict)  # seq -> consumed
    rejected: int = 0
    probe_failures: int = 0
    # What the worker's own steps cost meanwhile, seen from here (10 probes a second).
    redis_ms: list[float] = field(default_factory=list)
    kafka_ms: list[float] = field(default_factory=list)
    sending_done: bool = False
    drained: asyncio.Event = field(default_factory=asyncio.Event)

    def latencies_ms(self, ends: dict[int, float]) -> list[float]:
        """t1 - t0 per change; a change overtaken by a later one of the same item (the
        worker fetched the item after both) ends when that later version was cached."""
        found = []
        for seq, t0 in self.sent_at.items():
            end = next((ends[s] for s in range(seq, self.total, self.pool) if s in ends), None)
            if end is not None:
                found.append((end - t0) * 1000)
        return found

    def superseded(self) -> int:
        return sum(
            1
            for seq in self.sent_at
            if seq not in self.made_at
            and any(s in self.made_at for s in range(seq + self.pool, self.total, self.pool))
        )


async def collect(consumer: AIOKafkaConsumer, changes: Changes, stop: asyncio.Event) -> None:
    while not stop.is_set():
        batches = await consumer.getmany(timeout_ms=100)
        now = time.time()
        for tp, records in batches.items():
            for record in records:
                if tp.topic.endswith(PRICES_TOPIC):
                    # Ingest's record of the webhook: its Kafka timestamp is when ingest
                    # handed it to its producer (the ingest stage ends there).
                    notification_id = json.loads(record.value or b"{}").get("_id", "")
                    changes.queued_at[int(notification_id.rpartition("-")[2])] = (
                        record.timestamp / 1000
                    )
                    continue
                event = json.loads(record.value or b"{}")
                if event.get("type") != "item.price_changed":
                    continue
                seq = seq_of(event["new_price"], changes.total)
                if seq is not None and seq not in changes.made_at:
                    changes.made_at[seq] = record.timestamp / 1000
                    changes.read_at[seq] = now
        if changes.sending_done and len(changes.made_at) >= len(changes.sent_at):
            changes.drained.set()


async def probe(run: WorkerRun, changes: Changes, stop: asyncio.Event) -> None:
    """Time a Redis PING (as the catalog user) and an acks=all publish to the events topic
    (a record the collector ignores) every 100 ms while the changes run."""
    redis = connect_redis(CatalogSettings().redis)
    try:
        async with AIOKafkaEventPublisher(run.kafka) as publisher:
            while not stop.is_set():
                start = time.perf_counter()
                try:
                    await redis.ping()
                except (RedisError, OSError):
                    # A loaded machine can refuse the probe its connection: counted, and
                    # the run goes on (the worker's own calls retry).
                    changes.probe_failures += 1
                changes.redis_ms.append((time.perf_counter() - start) * 1000)
                start = time.perf_counter()
                await publisher.publish(
                    run.topic(PEEPERS_CATALOG), key=b"probe", value=b'{"type": "bench.probe"}'
                )
                changes.kafka_ms.append((time.perf_counter() - start) * 1000)
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.1)
    finally:
        await redis.aclose()


async def open_loop(
    rate: float, total: int, one: Callable[[int], Coroutine[Any, Any, None]]
) -> float:
    """Start ``one(seq)`` for each seq at its scheduled time; returns the achieved rate."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()
    start = loop.time() + 0.05
    for seq in range(total):
        delay = start + seq / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(seq))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks)
    return total / (loop.time() - start)


async def fetch_baseline(
    http: aiohttp.ClientSession, url: str, token: str, pool: list[str], rate: float, seconds: float
) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    errors = 0
    headers = {"Authorization": f"Bearer {token}"}

    async def one(seq: int) -> None:
        nonlocal errors
        t0 = time.perf_counter()
        async with http.get(f"{url}/items/{pool[seq % len(pool)]}", headers=headers) as response:
            await response.read()
            if response.status != 200:
                errors += 1
        latencies.append((time.perf_counter() - t0) * 1000)

    achieved = await open_loop(rate, int(rate * seconds), one)
    return latencies, errors, achieved


@dataclass
class Baseline:
    latencies_ms: list[float]
    errors: int
    achieved: float


@dataclass
class Saturation:
    """The worker and the raw loop draining the same backlog of notifications."""

    records: int
    worker_s: float
    worker_cpu_s: float
    raw_s: float
    raw_cpu_s: float
    batches: Batches

    @property
    def ratio(self) -> float:
        return self.raw_s / self.worker_s


async def backlog(
    http: aiohttp.ClientSession,
    admin: SandboxAdmin,
    run: WorkerRun,
    process: subprocess.Popen[bytes],
    seller: int,
    pool: list[str],
    count: int,
    token: str,
    sandbox_url: str,
    profile: Path | None = None,
) -> Saturation:
    """Drain ``count`` notifications put on the worker's topic at once; then the raw loop.

    ``profile``: py-spy the worker while it drains them.
    """
    gate = asyncio.Semaphore(32)

    async def change(n: int) -> None:
        async with gate:
            await admin.event("price_change", item_id=pool[n % len(pool)], price=PRICE_BASE - 1 - n)

    log(f"backlog: {count:,} price changes at the sandbox")
    await asyncio.gather(*(change(n) for n in range(count)))
    topic = run.topic(PRICES_TOPIC)
    start_offsets = await end_offsets(run.kafka, [topic])
    before = await scrape(http, run)
    cpu_before = cpu_seconds(process.pid)
    log(f"backlog: {count:,} notifications on the worker's topic at once")
    with py_spy(process.pid, profile):
        started = time.perf_counter()
        await _flood(run, topic, seller, pool, count)

        async def drained() -> bool:
            return (await scrape(http, run)).records - before.records >= count

        await wait_until(drained, timeout_s=600, every_s=0.05)
        worker_s = time.perf_counter() - started
    worker_cpu_s = cpu_seconds(process.pid) - cpu_before
    batches = (await scrape(http, run)).batches.plus(before.batches, -1.0)
    log(f"backlog: the worker drained it in {worker_s:.2f} s; now the raw aiokafka loop")
    raw_s, raw_cpu_s = await raw_loop(run, http, sandbox_url, token, start_offsets, count)
    return Saturation(count, worker_s, worker_cpu_s, raw_s, raw_cpu_s, batches)


async def _flood(run: WorkerRun, topic: str, seller: int, pool: list[str], count: int) -> None:
    """Put ``count`` price notifications of the pool's items on ``topic`` at once."""
    async with AIOKafkaEventPublisher(run.kafka) as publisher:
        now = datetime.now(UTC)
        await asyncio.gather(
            *(
                publisher.publish(topic, key=key, value=value, headers=headers)
                for key, value, headers in (
                    _notification(seller, pool[n % len(pool)], now) for n in range(count)
                )
            )
        )


def _notification(
    seller: int, item_id: str, now: datetime
) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    body = json.loads(webhook(unique("raw"), 0, seller, item_id))
    notification = Notification.model_validate(body)
    return (
        f"{seller}:{notification.resource_path}".encode(),
        encode_value(body, now),
        cloudevent_headers(notification, received_at=now),
    )


async def raw_loop(
    run: WorkerRun,
    http: aiohttp.ClientSession,
    sandbox_url: str,
    token: str,
    start_offsets: dict[TopicPartition, int],
    count: int,
) -> tuple[float, float]:
    """The same fetch and write with plain aiokafka, redis-py and aiohttp; (seconds, CPU s).

    No Faust, consumer kit, retry policy, limiter, validation or outbox: the floor that
    the worker's throughput is compared with. Records of one item in order, different
    items concurrently within a fetched batch (as the worker), offsets committed per batch.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=run.kafka.bootstrap_servers,
        group_id=unique("bench-raw"),
        enable_auto_commit=False,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=run.kafka.bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        linger_ms=2,
    )
    redis = connect_redis(CatalogSettings().redis)
    headers = {"Authorization": f"Bearer {token}"}
    events = run.topic(PEEPERS_CATALOG)

    async def one_item(records: list[Any]) -> None:
        for record in records:
            resource = orjson.loads(record.value)["resource"]
            item_id = resource.split("/")[2]
            async with http.get(f"{sandbox_url}/items/{item_id}", headers=headers) as response:
                body = await response.read()
            item = orjson.loads(body)
            await redis.hset(
                f"catalog:{run.scope}:raw:{item_id}",
                mapping={"doc": body, "v": item["last_updated"]},
            )
            event = {"type": "bench.raw", "item_id": item_id, "price": item["price"]}
            await (await producer.send(events, key=record.key, value=orjson.dumps(event)))

    await consumer.start()
    await producer.start()
    try:
        consumer.assign(list(start_offsets))
        for partition, offset in start_offsets.items():
            consumer.seek(partition, offset)
        done = 0
        cpu = time.process_time()
        started = time.perf_counter()
        while done < count:
            fetched = await consumer.getmany(timeout_ms=100, max_records=64)
            by_item: dict[bytes | None, list[Any]] = {}
            for records in fetched.values():
                for record in records:
                    by_item.setdefault(record.key, []).append(record)
                    done += 1
            await asyncio.gather(*(one_item(records) for records in by_item.values()))
            if fetched:
                await consumer.commit()
        return time.perf_counter() - started, time.process_time() - cpu
    finally:
        await consumer.stop()
        await producer.stop()
        await redis.aclose()


async def main(
    rate: float,
    duration: float,
    pool_size: int,
    baseline_s: float,
    workers: int,
    keep_logs: Path | None,
    profile: Path | None = None,
    backlog_size: int = 0,
    worker_env: dict[str, str] | None = None,
) -> None:
    kafka = kafka_settings()
    prefix = await catalog_topics(kafka)
    total = int(rate * duration)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        ingest_port = free_port()
        log(f"starting the sandbox ({pool_size:,} items), ingest and the catalog worker")
        with sandbox_process(workdir, pool_size) as sandbox:
            ingest = start_ingest(ingest_port, prefix, workdir / "spool", workdir / "ingest.log")
            async with (
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512)) as http,
                token_broker(SandboxAdmin(sandbox.url, http)) as broker_url,
            ):
                admin = SandboxAdmin(sandbox.url, http)
                run = worker_run(
                    prefix,
                    sandbox.url,
                    broker_url,
                    workdir,
                    # Far above the offered load: the limiter's check runs on every fetch.
                    CATALOG_ML__APP_LIMIT=json.dumps({"amount": 60_000, "per_s": 60}),
                    **(worker_env or {}),
                )
                # Replicas share the consumer group, the Redis scope and the topics.
                runs = [run] + [
                    replace(run, port=free_port(), log=workdir / f"catalog-{n}.log")
                    for n in range(1, workers)
                ]
                try:
                    with ExitStack() as stack:
                        processes = [stack.enter_context(worker_process(r)) for r in runs]
                        for r, process in zip(runs, processes, strict=True):
                            await wait_ready(r, process, timeout_s=60)
                        await _synced(run, sandbox.seller)
                        token = (await admin.mint_token(sandbox.seller))["access_token"]
                        ids = await seller_item_ids(http, sandbox.url, sandbox.seller, token)
                        pool = ids[:pool_size]
                        log(f"baseline: GET /items/{{id}} at {rate:g}/s for {baseline_s:g} s")
                        base = Baseline(
                            *await fetch_baseline(http, sandbox.url, token, pool, rate, baseline_s)
                        )
                        before = [await scrape(http, r) for r in runs]
                        cpu_before = sum(cpu_seconds(p.pid) for p in processes)
                        log(
                            f"driving {total:,} changes at {rate:g}/s, {workers} worker(s)"
                            + "".join(
                                f", {name}={value}" for name, value in (worker_env or {}).items()
                            )
                        )
                        with py_spy(processes[0].pid, profile):
                            changes, achieved = await _drive(
                                http, admin, run, ingest_port, sandbox.seller, pool, rate, total
                            )
                        costs = WorkerCosts(
                            cpu_s=sum(cpu_seconds(p.pid) for p in processes) - cpu_before
                        )
                        for r, earlier in zip(runs, before, strict=True):
                            costs = costs.plus((await scrape(http, r)).minus(earlier))
                        saturation = None
                        if backlog_size and workers == 1:
                            saturation = await backlog(
                                http,
                                admin,
                                run,
                                processes[0],
                                sandbox.seller,
                                pool,
                                backlog_size,
                                token,
                                sandbox.url,
                                profile and profile.with_suffix(".backlog" + profile.suffix),
                            )
                        for r, process in zip(runs, processes, strict=True):
                            if process.poll() is not None:
                                msg = f"a worker died:\n{r.log_tail()}"
                                raise SystemExit(msg)
                finally:
                    ingest.terminate()
                    ingest.wait()
                    if keep_logs is not None:
                        _keep(workdir, keep_logs)
                    log(f"cleaned up {await cleanup_scope(run.scope):,} keys")
    if keep_logs is not None:
        (keep_logs / "changes.json").write_text(
            json.dumps(
                {
                    seq: [
                        t0,
                        changes.queued_at.get(seq),
                        changes.made_at.get(seq),
                        changes.read_at.get(seq),
                    ]
                    for seq, t0 in changes.sent_at.items()
                }
            )
        )
    batch_max = int(
        (worker_env or {}).get(
            "CATALOG_BATCH_MAX", CatalogSettings.model_fields["batch_max"].default
        )
    )
    _report(rate, duration, base, changes, achieved, costs, workers, batch_max)
    if saturation is not None:
        _report_saturation(saturation, batch_max)


@contextmanager
def py_spy(pid: int, out: Path | None) -> Iterator[None]:
    """Sample the worker with py-spy (collapsed stacks, 100 Hz) while the block runs."""
    if out is None:
        yield
        return
    spy = subprocess.Popen(  # noqa: S603 - our own venv's py-spy on our own child
        [
            str(Path(sys.executable).with_name("py-spy")),
            "record",
            "--pid",
            str(pid),
            "--rate",
            "100",
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=30)
        log(f"py-spy profile of the worker: {out}")


def _keep(workdir: Path, keep_logs: Path) -> None:
    keep_logs.mkdir(parents=True, exist_ok=True)
    for path in workdir.glob("*.log"):
        (keep_logs / path.name).write_bytes(path.read_bytes())


async def _synced(run: WorkerRun, seller: int) -> None:
    await connect_seller(run, seller)
    deadline = time.monotonic() + 300
    while True:
        state = await sync_state(run, seller)
        if state is not None and state.phase == "done":
            log(f"worker synced the seller first: {state.counts}")
            return
        if time.monotonic() > deadline:
            msg = f"the initial sync did not finish:\n{run.log_tail()}"
            raise SystemExit(msg)
        await asyncio.sleep(0.5)


async def _drive(
    http: aiohttp.ClientSession,
    admin: SandboxAdmin,
    run: WorkerRun,
    ingest_port: int,
    seller: int,
    pool: list[str],
    rate: float,
    total: int,
) -> tuple[Changes, float]:
    changes = Changes(total, len(pool))
    run_id = unique("lat")
    consumer = AIOKafkaConsumer(
        run.topic(PEEPERS_CATALOG),
        run.topic(PRICES_TOPIC),
        bootstrap_servers=run.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    stop = asyncio.Event()
    collector = asyncio.create_task(collect(consumer, changes, stop))
    prober = asyncio.create_task(probe(run, changes, stop))
    target = f"http://127.0.0.1:{ingest_port}{PATH}"
    shown = [time.monotonic()]

    async def one(seq: int) -> None:
        item_id = pool[seq % len(pool)]
        await admin.event("price_change", item_id=item_id, price=PRICE_BASE + seq)
        body = webhook(run_id, seq, seller, item_id)
        t0 = time.time()
        if not await post_webhook(http, target, body):
            changes.rejected += 1
            return
        changes.sent_at[seq] = t0
        if time.monotonic() - shown[0] >= 5:
            shown[0] = time.monotonic()
            log(f"  sent {seq + 1:,}/{total:,}; {len(changes.made_at):,} reached the cache")

    try:
        achieved = await open_loop(rate, total, one)
        changes.sending_done = True
        deadline = time.monotonic() + 180
        while not changes.drained.is_set() and time.monotonic() < deadline:
            with suppress(TimeoutError):
                await asyncio.wait_for(changes.drained.wait(), timeout=5)
            log(f"  all sent; {len(changes.made_at):,}/{total:,} reached the cache")
    finally:
        stop.set()
        await collector
        await prober
        await consumer.stop()
    return changes, achieved


def _report(
    rate: float,
    duration: float,
    base: Baseline,
    changes: Changes,
    achieved: float,
    costs: WorkerCosts,
    workers: int,
    batch_max: int,
) -> None:
    made, read = changes.latencies_ms(changes.made_at), changes.latencies_ms(changes.read_at)

    def row(name: str, values: list[float], achieved: float, count: int) -> str:
        cells = " | ".join(f"{percentile(values, q):,.1f}" for q in (0.5, 0.99, 0.999))
        return f"| {name} | {count:,} | {achieved:,.0f} | {cells} | {max(values, default=0):,.1f} |"

    print()
    print("| measured | samples | achieved /s | p50 ms | p99 ms | p99.9 ms | max ms |")
    print("|---|---|---|---|---|---|---|")
    fetches = base.latencies_ms
    print(row("baseline: sandbox GET /items/{id}", fetches, base.achieved, len(fetches)))
    queued = changes.latencies_ms(changes.queued_at)
    print(row("webhook -> notification in Kafka (ingest)", queued, achieved, len(queued)))
    print(row("webhook -> event made (Kafka timestamp)", made, achieved, len(made)))
    print(row("webhook -> event read by the bench", read, achieved, len(read)))
    print(row("meanwhile: Redis PING", changes.redis_ms, 10, len(changes.redis_ms)))
    print(row("meanwhile: Kafka publish, acks=all", changes.kafka_ms, 10, len(changes.kafka_ms)))
    if changes.probe_failures:
        print(f"(Redis refused {changes.probe_failures} PING probes: the machine was loaded)")
    print()
    superseded = changes.superseded()
    lost = len(changes.sent_at) - len(made)
    print(
        f"{rate:g} changes/s for {duration:g} s: {len(changes.sent_at):,} webhooks accepted, "
        f"{changes.rejected} refused, {superseded} overtaken by a later change of the same "
        f"item, {lost} never reached the cache; {base.errors} baseline fetch errors"
    )
    if len(changes.made_at) > 1:
        first, last = min(changes.made_at.values()), max(changes.made_at.values())
        print(
            f"worker throughput: {len(changes.made_at):,} changes applied in {last - first:.1f} s "
            f"= {(len(changes.made_at) - 1) / max(last - first, 1e-9):,.0f}/s"
        )
    if costs.records:
        print(
            f"worker, per record (its /metrics): {costs.processing_s / costs.records * 1000:.1f} ms"
            f" from taking the record to acking it, of which ML fetch "
            f"{costs.fetch_s / max(costs.fetches, 1) * 1000:.1f} ms and limiter "
            f"{costs.limiter_s / costs.records * 1000:.1f} ms waiting in "
            f"{costs.leases:,.0f} round trips to the shared budget ({costs.records:,.0f} records; "
            f"records of different items overlap within a batch); "
            f"worker CPU {costs.cpu_s / costs.records * 1000:.1f} ms per record"
        )
        print(f"worker batches: {costs.batches.report(batch_max)}")
    p99 = percentile(read, 0.99)
    verdict = "met" if p99 < TARGET_P99_MS and not lost else "NOT met"
    print(f"target p99 < {TARGET_P99_MS:g} ms (upper bound, event read): {verdict}")


def worker_setting(text: str) -> tuple[str, str]:
    """``NAME=VALUE`` of a worker setting; the worker's own environment holds only these."""
    name, sep, value = text.partition("=")
    if not sep or not name.startswith("CATALOG_"):
        msg = f"expected CATALOG_NAME=VALUE, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return name, value


def _report_saturation(sat: Saturation, batch_max: int) -> None:
    n = sat.records
    print(
        f"backlog of {n:,} notifications: worker {n / sat.worker_s:,.0f}/s "
        f"({sat.worker_cpu_s / n * 1000:.2f} ms CPU per record), raw aiokafka loop "
        f"{n / sat.raw_s:,.0f}/s ({sat.raw_cpu_s / n * 1000:.2f} ms CPU per record, this "
        f"process); ratio {sat.ratio:.2f} (target >= {TARGET_RAW_RATIO:g}: "
        f"{'met' if sat.ratio >= TARGET_RAW_RATIO else 'NOT met'})"
    )
    print(f"worker batches draining it: {sat.batches.report(batch_max)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=200.0, help="changes per second")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of changes")
    parser.add_argument("--pool", type=int, default=5000, help="items of the seller")
    parser.add_argument("--baseline-s", type=float, default=10.0, help="seconds of plain GETs")
    parser.add_argument("--keep-logs", type=Path, help="copy the processes' logs here")
    parser.add_argument("--workers", type=int, default=1, help="worker replicas (one group)")
    parser.add_argument("--profile", type=Path, help="py-spy the first worker into this file")
    parser.add_argument(
        "--backlog", type=int, default=4000, help="notifications for the raw baseline (0: skip)"
    )
    parser.add_argument(
        "--worker-env",
        type=worker_setting,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a CATALOG_* setting for the workers, e.g. CATALOG_BATCH_WITHIN_S=0.02 (repeatable)",
    )
    args = parser.parse_args()
    run_then_delete_topics(
        main(
            args.rate,
            args.duration,
            args.pool,
            args.baseline_s,
            args.workers,
            args.keep_logs,
            args.profile,
            args.backlog,
            dict(args.worker_env),
        )
    )
