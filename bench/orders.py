"""The orders service's figures (issue 14), with real processes on loopback.

The sandbox (``python -m peepers_sandbox``: one seller with ``--orders`` orders of
history, no notifier, no limits of its own), ingest (``python -m peepers_ingest``,
acks=all), the orders worker (``python -m peepers_orders worker``) and its mailer (``python
-m peepers_orders mailer``, a process of its own), aiosmtpd (a real SMTP
server, in this process) and the catalog benches' stand-in token broker; scratch topics
and Redis scope. The worker shares one outbound limit (``--requests-per-minute``) over
every ML family (``--limit`` requests per ``--window-s`` seconds; 100 a second by
default, ten-second windows so that a reduced run still spans many), as production
shares ML's app limit.

1. **Backfill, as a ratio to the ML-limit bound.** ``seller.connected`` starts the
   backfill of the seller's history (``/orders/search`` pages, and the shipments and packs
   the orders need). The bound is the time the limiter alone needs for the requests the
   worker made meanwhile (its ``peepers_ml_requests_total``) at the limit's pace, the
   window counted as the limiter counts it (`limit_bound_s`). Reported: elapsed / bound
   (target <= 1.2).
2. **Webhook → order cached, at ``--rate`` order changes a second** (open loop for
   ``--duration`` s). A change is a new order, or the payment of an order made at least
   `SETTLE_S` earlier (every other change, when there is one), made at the sandbox (admin
   event); then at t0 its ``orders_v2`` webhook is POSTed to ingest. The worker fetches the
   order (and, once it is paid, its shipment) from the sandbox, writes the cache
   (compare-and-set, events in its outbox) and publishes ``order.created`` /
   ``order.paid``; t1 is when this process reads that event (after the cache write and
   the ack: an upper bound). Target p99 < 250 ms. **Baseline, live in the same run**: a
   plain aiokafka loop in this process (`RawLoop`: no Faust, consumer kit, limiter,
   validation, lifecycle or outbox) consumes the same notifications in its own group and
   does the same fetches, one Redis HSET and one acks=all publish to a scratch topic; its
   t1 is when that publish is acknowledged.
3. **Emails a second to the local SMTP server.** ``--emails`` copies of a real
   ``order.created`` event of step 2 (other order ids) are put on the worker's
   ``peepers.orders.v1`` at once; the mailer (ledger lookup, templates, aiosmtplib, ledger
   write) sends them to aiosmtpd. Baseline in the same run: aiosmtplib sending as many
   built messages to the same server one after another, as the mailer does, with no
   ledger and no rendering.
4. **Worker peak RSS** (VmHWM, and VmRSS sampled every 100 ms), of each worker process.
   Target < 300 MB.

Step 1 runs one worker process with the limit above; steps 2 and 3 run the same
deployment again (its groups, scope and mail ledger) with ML's limit far above the load,
so that the latency is the worker's and not the limiter's pace (as the catalog's bench).

    set -a; . .stack/env; set +a
    uv run python -m bench.orders [--orders 10000] [--rate 100] [--duration 20] \\
        [--emails 1000] [--limit 1000] [--window-s 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, cast
from uuid import NAMESPACE_URL, uuid4, uuid5

import aiohttp
import aiosmtplib
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.catalog_support import (
    connect_seller,
    log,
    memory_kib,
    ml_webhook,
    percentile,
    run_then_delete_topics,
    sampled_peak,
    sandbox_of,
    token_broker,
)
from bench.ingest import PATH, start_ingest
from peepers_common.kafka import AIOKafkaEventPublisher, end_offsets
from peepers_common.ml.ratelimit import LEASE_TTL_S, MARGIN_S
from peepers_common.namespaces import Namespace, connect_redis
from peepers_common.settings import KafkaSettings, StackSettings
from peepers_common.topic_admin import ensure_topics
from peepers_common.topics import PEEPERS_ORDERS, TopicSpec
from peepers_devstack.metrics import Scrape
from peepers_orders.adapters.redis_store import RedisSellerDirectory
from peepers_orders.adapters.smtp import build_message
from peepers_orders.app import NOTIFICATION_TOPICS
from peepers_orders.ports import OutgoingMail
from peepers_orders.settings import Settings as OrdersSettings
from peepers_sandbox.client import SandboxAdmin
from peepers_sandbox.config import MarketplaceConfig, NotifierConfig, SandboxConfig
from tests.integration.auth.harness import AuthStack
from tests.integration.ingest.support import free_port
from tests.integration.orders.smtp import SmtpSink, smtp_sink
from tests.integration.orders.worker import OrdersRun, orders_topics, worker_process
from tests.support import unique, wait_until

TARGET_P99_MS: Final = 250.0
TARGET_BOUND_RATIO: Final = 1.2
TARGET_RSS_MB: Final = 300.0
SETTLE_S: Final = 0.5  # a payment pays an order made at least this long before
MAIL_ORDER_BASE: Final = 9 * 10**18  # order ids of the mail step's copies (ML's: 16 digits)
FROM_ADDRESS: Final = "Peepers <vendas@peepers.local>"
TO_ADDRESS: Final = "seller@bench.local"
ORDERS_V2: Final = "ml.notifications.orders_v2"
RAW_TOPIC: Final = "bench.orders.raw"


# ---------------------------------------------------------------- pure parts
def limit_bound_s(requests: float, amount: int, per_s: float) -> float:
    """The time `requests` take at the pace of a limit of `amount` per `per_s` seconds, as
    the limiter counts its window: longer by its margin and a lease's ttl
    (peepers_common.ml.ratelimit). A first window's burst can beat it when `requests` is
    not many times `amount`."""
    window = per_s + MARGIN_S + min(LEASE_TTL_S, per_s / 20)
    return requests * window / amount


@dataclass
class ChangePlan:
    """Which change comes next: every other one pays the oldest unpaid order made at least
    `settle_s` before (so its creation is cached first), else a new order."""

    settle_s: float = SETTLE_S
    unpaid: deque[tuple[float, int]] = field(default_factory=deque)

    def next(self, seq: int, now: float) -> int | None:
        """The order to pay now, or None for a new order."""
        if seq % 2 == 1 and self.unpaid and now - self.unpaid[0][0] >= self.settle_s:
            return self.unpaid.popleft()[1]
        return None

    def created(self, order_id: int, now: float) -> None:
        self.unpaid.append((now, order_id))


Change = tuple[int, str]  # (order id, event type)


def latencies_ms(sent_at: dict[Change, float], done_at: dict[Change, float]) -> list[float]:
    """t1 - t0 of every change that was done; a change done before its own webhook (an
    earlier fetch already showed it) counts as 0."""
    return [max(0.0, done_at[c] - t0) * 1000 for c, t0 in sent_at.items() if c in done_at]


def summary(latencies: list[float], sent: int) -> dict[str, float]:
    return {
        "sent": sent,
        "done": len(latencies),
        "p50_ms": percentile(latencies, 0.50),
        "p95_ms": percentile(latencies, 0.95),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies, default=float("nan")),
    }


def mail_copy(template: dict[str, Any], order_id: int) -> bytes:
    """A real order event, for another order: its own deterministic event id."""
    event = {
        **template,
        "event_id": str(uuid5(NAMESPACE_URL, f"peepers-bench-mail:{order_id}")),
        "order_id": order_id,
        "order": {**template["order"], "order_id": order_id},
    }
    return orjson.dumps(event)


def is_copy_mail(message_id: str, count: int) -> bool:
    """A mail of the mail step: ``<order-{id}-{transition}@...>`` with a copy's id."""
    parts = message_id.strip("<>").split("-", 2)
    return (
        len(parts) == 3
        and parts[1].isdigit()
        and MAIL_ORDER_BASE <= int(parts[1]) < MAIL_ORDER_BASE + count
    )


# ---------------------------------------------------------------- processes
@dataclass(frozen=True)
class _Url:
    url: str


@dataclass(frozen=True)
class StandInAuth:
    """What `OrdersRun` reads of an `AuthStack`: the sandbox's URL and the broker's."""

    sandbox: _Url
    url: str


def one_seller_orders(orders: int) -> SandboxConfig:
    """One seller with `orders` orders of history (on 50 items), notifier off."""
    return SandboxConfig(
        marketplace=MarketplaceConfig(
            sellers=1,
            items_per_seller=50,
            orders_per_seller=orders,
            questions_per_seller=0,
            claims_per_seller=0,
        ),
        notifier=NotifierConfig(enabled=False),
    )


async def cleanup_scope(scope: str) -> None:
    """Delete the scratch scope's keys: the worker's, the raw loop's, the limiter's."""
    admin = connect_redis(StackSettings().redis)
    try:
        keys = [key async for key in admin.scan_iter(match=f"*{scope}*", count=5000)]
        for start in range(0, len(keys), 1000):
            await admin.unlink(*keys[start : start + 1000])
    finally:
        await admin.aclose()


async def scrape_worker(http: aiohttp.ClientSession, run: OrdersRun) -> Scrape:
    async with http.get(f"{run.url}/metrics") as response:
        return Scrape.parse(await response.text())


async def ml_requests(http: aiohttp.ClientSession, run: OrdersRun) -> float:
    return (await scrape_worker(http, run)).total("peepers_ml_requests_total")


def breakdown(before: Scrape, after: Scrape, topics: list[str]) -> dict[str, Any]:
    """Where the worker's time went between two scrapes: per notification record, the
    take-to-ack time, the ML calls and their mean, the limiter's wait and the CPU."""

    def delta(name: str, **labels: str) -> float:
        return after.total(name, **labels) - before.total(name, **labels)

    processing = "peepers_consumer_processing_seconds"
    records = sum(delta(f"{processing}_count", consumer="orders", topic=t) for t in topics)
    took = sum(delta(f"{processing}_sum", consumer="orders", topic=t) for t in topics)
    calls = delta("peepers_ml_request_duration_seconds_count")
    per = records or float("nan")
    family = "peepers_ml_request_duration_seconds_count"
    was = before.by(family, "family")
    by_family = {
        name: round((n - was.get(name, 0.0)) / per, 2)
        for name, n in after.by(family, "family").items()
        if n - was.get(name, 0.0)
    }
    return {
        "records": records,
        "ml_calls_per_record_by_family": by_family,
        "take_to_ack_ms": took / per * 1000,
        "ml_calls_per_record": calls / per,
        "ml_call_ms": delta("peepers_ml_request_duration_seconds_sum") / (calls or 1) * 1000,
        "limiter_wait_ms_per_record": delta("peepers_ml_limiter_wait_seconds_total") / per * 1000,
        "cpu_ms_per_record": delta("process_cpu_seconds_total") / per * 1000,
    }


async def tail_consumer(kafka: KafkaSettings, topic: str) -> AIOKafkaConsumer:
    """A consumer of every partition of `topic`, from its end now (no group to join)."""
    ends = await end_offsets(kafka, [topic])
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    consumer.assign(list(ends))
    for partition, offset in ends.items():
        consumer.seek(partition, offset)
    return consumer


# ---------------------------------------------------------------- 1. backfill
async def backfill_figure(
    http: aiohttp.ClientSession, run: OrdersRun, seller: int, limit: int, window_s: float
) -> dict[str, Any]:
    redis = connect_redis(OrdersSettings().redis)
    checkpoints = RedisSellerDirectory(redis, Namespace("orders", scope=run.scope))
    try:
        # Else the new cache's rebuild may backfill the seller too.
        await wait_until(run.cache_ready, timeout_s=60, every_s=0.1)
        before = await ml_requests(http, run)
        started = last_log = time.monotonic()
        await connect_seller(run, seller)
        while True:
            state = await checkpoints.load(seller)
            if state is not None and state.phase == "done":
                break
            if time.monotonic() - last_log > 10 and state is not None:
                last_log = time.monotonic()
                log(f"   backfill at {state.offset}/{state.total}")
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - started
    finally:
        await redis.aclose()
    requests = await ml_requests(http, run) - before
    bound = limit_bound_s(requests, limit, window_s)
    return {
        "orders": state.offset,
        "outcomes": state.counts,
        "ml_requests": requests,
        "elapsed_s": elapsed,
        "bound_s": bound,
        "ratio": elapsed / bound if bound else float("nan"),
        "target_ratio": TARGET_BOUND_RATIO,
    }


# ---------------------------------------------------------------- 2. latency
def webhook(run_id: str, seq: int, seller: int, order_id: int) -> bytes:
    return ml_webhook(f"{run_id}-{seq}", "orders_v2", f"/orders/{order_id}", seller)


@dataclass
class RawLoop:
    """The floor: plain aiokafka, aiohttp and redis-py doing the worker's fetches and a write.

    Records of one key in order, different keys concurrently within a fetched batch (as
    the worker), offsets not committed (it reads from where it was placed).
    """

    run: OrdersRun
    http: aiohttp.ClientSession
    sandbox_url: str
    token: str
    done_at: dict[Change, float] = field(default_factory=dict)

    async def run_until(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.run.kafka.bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
        )
        redis = connect_redis(OrdersSettings().redis)
        await producer.start()
        try:
            while not stop.is_set():
                fetched = await consumer.getmany(timeout_ms=100, max_records=64)
                by_key: dict[bytes | None, list[Any]] = {}
                for records in fetched.values():
                    for record in records:
                        by_key.setdefault(record.key, []).append(record)
                await asyncio.gather(
                    *(self._in_order(producer, redis, recs) for recs in by_key.values())
                )
        finally:
            await producer.stop()
            await redis.aclose()

    async def _in_order(self, producer: AIOKafkaProducer, redis: Any, records: list[Any]) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        for record in records:
            order_id = int(orjson.loads(record.value)["resource"].rsplit("/", 1)[1])
            async with self.http.get(
                f"{self.sandbox_url}/orders/{order_id}", headers=headers
            ) as response:
                body = await response.read()
            order = orjson.loads(body)
            paid = order["status"] == "paid"
            shipment = (order.get("shipping") or {}).get("id")
            if paid and shipment:
                async with self.http.get(
                    f"{self.sandbox_url}/shipments/{shipment}",
                    headers={**headers, "x-format-new": "true"},
                ) as response:
                    await response.read()
            await redis.hset(f"orders:{self.run.scope}:raw:{order_id}", mapping={"data": body})
            event = {"type": "bench.raw", "order_id": order_id, "status": order["status"]}
            await (
                await producer.send(
                    self.run.topic(RAW_TOPIC), key=record.key, value=orjson.dumps(event)
                )
            )
            now = time.monotonic()
            self.done_at.setdefault((order_id, "order.created"), now)
            if paid:
                self.done_at.setdefault((order_id, "order.paid"), now)


async def latency_figure(
    http: aiohttp.ClientSession,
    run: OrdersRun,
    sandbox_url: str,
    ingest_url: str,
    seller: int,
    args: argparse.Namespace,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The worker's and the raw loop's figures, and an ``order.created`` event read."""
    admin = SandboxAdmin(sandbox_url, http)
    token = str((await admin.mint_token(seller))["access_token"])
    raw = RawLoop(run, http, sandbox_url, token)
    sent_at: dict[Change, float] = {}
    seen_at: dict[Change, float] = {}
    template: dict[str, Any] | None = None
    scraped = await scrape_worker(http, run)
    events = await tail_consumer(run.kafka, run.topic(PEEPERS_ORDERS))
    notifications = await tail_consumer(run.kafka, run.topic(ORDERS_V2))
    stop = asyncio.Event()

    async def collect() -> None:
        nonlocal template
        while not stop.is_set():
            batches = await events.getmany(timeout_ms=100)
            now = time.monotonic()
            for records in batches.values():
                for record in records:
                    event = orjson.loads(record.value or b"{}")
                    if event.get("type") in ("order.created", "order.paid"):
                        seen_at.setdefault((int(event["order_id"]), event["type"]), now)
                    if event.get("type") == "order.created" and template is None:
                        template = event

    readers = [
        asyncio.create_task(collect()),
        asyncio.create_task(raw.run_until(notifications, stop)),
    ]
    plan = ChangePlan()
    run_id, total = uuid4().hex[:8], int(args.rate * args.duration)
    failures = 0

    async def one(seq: int) -> None:
        nonlocal failures
        order_id = plan.next(seq, time.monotonic())
        if order_id is None:
            order_id = int((await admin.event("new_order", seller_id=seller))["id"])
            change: Change = (order_id, "order.created")
            plan.created(order_id, time.monotonic())
        else:
            await admin.event("payment", order_id=order_id)
            change = (order_id, "order.paid")
        sent_at[change] = time.monotonic()
        async with http.post(
            ingest_url,
            data=webhook(run_id, seq, seller, order_id),
            headers={"Content-Type": "application/json"},
        ) as response:
            if response.status != 200:
                failures += 1

    async def all_done() -> bool:
        return sent_at.keys() <= seen_at.keys() and sent_at.keys() <= raw.done_at.keys()

    # Warm up, untimed: the worker's group may still be joining after /readyz said ready.
    await one(-2)  # a new order (even), with a webhook id of its own
    await wait_until(all_done, timeout_s=120, every_s=0.1)
    plan.unpaid.clear()
    sent_at.clear()
    tasks = []
    start = time.monotonic()
    for seq in range(total):
        await asyncio.sleep(max(0.0, start + seq / args.rate - time.monotonic()))
        tasks.append(asyncio.create_task(one(seq)))
    await asyncio.gather(*tasks)

    with contextlib.suppress(AssertionError):  # what is missing then is reported as such
        await wait_until(all_done, timeout_s=60, every_s=0.1)
    stop.set()
    await asyncio.gather(*readers)
    await events.stop()
    await notifications.stop()
    worker = summary(latencies_ms(sent_at, seen_at), len(sent_at))
    baseline = summary(latencies_ms(sent_at, raw.done_at), len(sent_at))
    for kind in ("order.created", "order.paid"):
        of_kind = {c: t0 for c, t0 in sent_at.items() if c[1] == kind}
        worker[f"{kind}_p99_ms"] = summary(latencies_ms(of_kind, seen_at), 0)["p99_ms"]
        baseline[f"{kind}_p99_ms"] = summary(latencies_ms(of_kind, raw.done_at), 0)["p99_ms"]
    return (
        {
            "changes": total,
            "paid": sum(1 for _, kind in sent_at if kind == "order.paid"),
            "webhook_failures": failures,
            "worker": worker,
            "raw_loop": baseline,
            "target_p99_ms": TARGET_P99_MS,
            "worker_breakdown": breakdown(
                scraped,
                await scrape_worker(http, run),
                [run.topic(topic) for topic in NOTIFICATION_TOPICS],
            ),
        },
        template,
    )


# ---------------------------------------------------------------- 3. email
async def wait_mail_quiet(sink: SmtpSink, quiet_s: float = 2.0, within_s: float = 300.0) -> int:
    """Wait until the server has received nothing new for `quiet_s`; the count then."""
    deadline = time.monotonic() + within_s
    count, since = len(sink.inbox.snapshot()), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet_s:
        await asyncio.sleep(0.1)
        now_count = len(sink.inbox.snapshot())
        if now_count != count:
            count, since = now_count, time.monotonic()
    return count


async def mail_figure(
    run: OrdersRun, sink: SmtpSink, template: dict[str, Any], count: int
) -> dict[str, Any]:
    seller = int(template["seller_id"])
    topic = run.topic(PEEPERS_ORDERS)
    at_start = len(sink.inbox.snapshot())
    started = time.monotonic()
    async with AIOKafkaEventPublisher(run.kafka) as publisher:
        await asyncio.gather(
            *(
                publisher.publish(
                    topic,
                    key=f"{seller}:{MAIL_ORDER_BASE + i}".encode(),
                    value=mail_copy(template, MAIL_ORDER_BASE + i),
                )
                for i in range(count)
            )
        )
    published = time.monotonic() - started
    first: float | None = None
    deadline = time.monotonic() + 60 + count / 10
    received = 0
    while received < count and time.monotonic() < deadline:
        received = sum(1 for mid in sink.inbox.ids() if is_copy_mail(mid, count))
        if received and first is None:
            first = time.monotonic()
        await asyncio.sleep(0.02)
    elapsed = time.monotonic() - started
    worker = {
        # Every mail received meanwhile: step 2's, when the mailer was still behind, too.
        "all_per_s": (len(sink.inbox.snapshot()) - at_start) / elapsed,
        "sent": received,
        "published_in_s": published,
        "elapsed_s": elapsed,
        "per_s": received / elapsed,
        "per_s_after_first": (received - 1) / (time.monotonic() - first) if first else 0.0,
    }
    before = len(sink.inbox.snapshot())
    started = time.monotonic()
    for i in range(count):
        mail = OutgoingMail(
            message_id=f"<bench-raw-{i}@peepers.local>",
            to=TO_ADDRESS,
            subject="Venda",
            text="Venda",
            html="<p>Venda</p>",
        )
        await aiosmtplib.send(
            build_message(mail, FROM_ADDRESS), hostname="127.0.0.1", port=sink.port, timeout=10
        )
    direct_s = time.monotonic() - started
    direct = {
        "sent": len(sink.inbox.snapshot()) - before,
        "elapsed_s": direct_s,
        "per_s": count / direct_s,
    }
    ratio = worker["per_s"] / direct["per_s"]
    return {"mailer": worker, "aiosmtplib_direct": direct, "ratio": ratio}


# ---------------------------------------------------------------- main
async def main(args: argparse.Namespace) -> None:
    kafka = StackSettings().kafka
    with tempfile.TemporaryDirectory(prefix="bench-orders-") as tmp, smtp_sink() as sink:
        workdir = args.keep_logs or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        prefix = await orders_topics(kafka)
        await ensure_topics(kafka, [TopicSpec(prefix + RAW_TOPIC, 3, "bench scratch")])
        ingest_port = free_port()
        log(f"sandbox: one seller, {args.orders} orders")
        config = one_seller_orders(args.orders)
        with sandbox_of(workdir, config, timeout_s=120 + args.orders / 100) as ml:
            sandbox_url, seller = ml.url, ml.seller
            ingest = start_ingest(ingest_port, prefix, workdir / "spool", workdir / "ingest.log")
            scope = unique("bench")
            try:
                async with (
                    aiohttp.ClientSession() as http,
                    token_broker(SandboxAdmin(sandbox_url, http)) as broker,
                ):
                    run = OrdersRun(
                        prefix=prefix,
                        kafka=kafka,
                        # Only its two URLs are read.
                        auth=cast(AuthStack, StandInAuth(_Url(sandbox_url), broker)),
                        smtp_port=sink.port,
                        log=workdir / "orders.log",
                        scope=scope,
                        app_id=unique("bench-orders"),
                        mailer_id=unique("bench-mailer"),
                        extra_env={
                            "ORDERS_LOG_LEVEL": "WARNING",
                            "ORDERS_ML__CALL_BUDGET_S": "60",
                            "ORDERS_SMTP__OVERRIDE_TO": TO_ADDRESS,
                            "ORDERS_SMTP__TIMEOUT_S": "10",
                        },
                    )
                    results = await _figures(
                        http,
                        run,
                        sink,
                        sandbox_url,
                        f"http://127.0.0.1:{ingest_port}{PATH}",
                        seller,
                        args,
                    )
                    print(json.dumps(results, indent=2))
            finally:
                ingest.terminate()
                ingest.wait()
                await cleanup_scope(scope)


def limited(run: OrdersRun, amount: int, per_s: float) -> OrdersRun:
    """The deployment with one ML app limit of `amount` per `per_s` seconds."""
    limit = json.dumps({"amount": amount, "per_s": per_s})
    env = {**run.extra_env, "ORDERS_ML__APP_LIMIT": limit}
    return replace(run, port=free_port(), extra_env=env)


async def measured(
    run: OrdersRun, figures: Callable[[], Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    """Start the worker, take `figures` from it, and its peak RSS meanwhile; stop it."""
    with worker_process(run) as process:
        deadline = time.monotonic() + 120
        while not await run.ready():
            if process.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"the worker did not start:\n{run.log_tail()}")
            await asyncio.sleep(0.2)
        stop = asyncio.Event()
        sampler = asyncio.create_task(sampled_peak(process.pid, stop))
        try:
            results = await figures()
        finally:
            stop.set()
            sampled = await sampler
        results["worker_rss_mb"] = {
            "peak": memory_kib(process.pid)[1] * 1024 / 1e6,  # VmHWM
            "sampled_peak": sampled * 1024 / 1e6,
        }
        return results


async def _figures(
    http: aiohttp.ClientSession,
    run: OrdersRun,
    sink: SmtpSink,
    sandbox_url: str,
    ingest_url: str,
    seller: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    log(f"1. backfill of {args.orders} orders, ML limit {args.limit} per {args.window_s:g} s")
    backfill_run = limited(run, args.limit, args.window_s)

    async def backfilled() -> dict[str, Any]:
        return await backfill_figure(http, backfill_run, seller, args.limit, args.window_s)

    results: dict[str, Any] = {"backfill": await measured(backfill_run, backfilled)}
    log(f"   {results['backfill']}")
    # The same deployment again (groups, scope, ledger), with ML's limit far above the
    # load: the latency is the worker's, not the limiter's pace (as the catalog's bench).
    live_run = limited(run, 1_000_000, 1)

    async def live() -> dict[str, Any]:
        log(f"2. webhook -> order cached at {args.rate:g} changes/s for {args.duration:g} s")
        latency, template = await latency_figure(
            http, live_run, sandbox_url, ingest_url, seller, args
        )
        log(f"   {latency}")
        if template is None:
            log("3. skipped: no order.created event was read")
            return {"webhook_to_cache": latency}
        log(f"   the step's mail: {await wait_mail_quiet(sink)} received")
        log(f"3. {args.emails} emails through the mailer, then aiosmtplib directly")
        emails = await mail_figure(live_run, sink, template, args.emails)
        log(f"   {emails}")
        return {"webhook_to_cache": latency, "emails": emails}

    results["live"] = await measured(live_run, live)
    results["worker_rss_target_mb"] = TARGET_RSS_MB
    return results


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--orders", type=int, default=10_000, help="history to backfill")
    parser.add_argument("--rate", type=float, default=100, help="order changes a second")
    parser.add_argument("--duration", type=float, default=20, help="seconds of changes")
    parser.add_argument("--emails", type=int, default=1000)
    parser.add_argument("--keep-logs", type=Path, help="the processes' logs go here")
    parser.add_argument("--limit", type=int, default=1000, help="ML requests per window")
    parser.add_argument("--window-s", type=float, default=10, help="the limit's window")
    return parser.parse_args(argv)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        run_then_delete_topics(main(parse()))
