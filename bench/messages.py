"""The messages service's three figures (issue 15), with real processes on loopback.

The sandbox (``python -m peepers_sandbox``: one seller, ``--items`` items, exactly
``--questions`` unanswered questions spread over them, made through its admin API: its
own seed answers 60% of what it makes; no notifier, no limits of its own), ingest
(``python -m peepers_ingest``, acks=all), the messages worker (``python -m peepers_messages
worker``) and the catalog benches' stand-in token broker; scratch topics and Redis scope.

1. **Backfill of the questions, as a ratio to the limit bound.** The worker's
   ``questions`` family is limited to ``--questions-per-minute`` requests a minute (shared
   limiter, as in production). ``seller.connected`` starts the backfill; more than 1,000
   unanswered questions means one search per item. The bound is the time the limiter
   alone needs for the requests the backfill made (from the worker's
   ``peepers_ml_requests_total``): requests / limit. Reported: elapsed / bound (1.0 is
   the limiter's own pace; the target is close to it).
2. **Webhook → question in the inbox at ``--rate`` questions a second** (open loop for
   ``--duration`` s): a question is made at the sandbox (admin event), then at t0 its
   ``questions`` webhook is POSTed to ingest. The worker fetches it, writes the mirror
   (the inbox) and then publishes ``question.received``; t1 is when this process reads
   that event from the topic (after the inbox write; an upper bound). Target p99 < 250 ms.
3. **Answer round trip**: ``--answers`` answers, one at a time, through the worker's API
   (``POST .../questions/{id}/answer``) to the sandbox's ``POST /answers`` and back.

    set -a; . .stack/env; set +a
    uv run python -m bench.messages [--questions 5000] [--items 200] [--rate 50] \\
        [--duration 10] [--answers 100] [--questions-per-minute 6000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import aiohttp
from aiokafka import AIOKafkaConsumer

from bench.catalog_support import (
    kafka_settings,
    log,
    ml_webhook,
    percentile,
    run_then_delete_topics,
    token_broker,
)
from bench.ingest import PATH, start_ingest, wait_port
from peepers_common.events import SellerConnected, seller_event_key
from peepers_common.kafka import AIOKafkaEventPublisher
from peepers_common.namespaces import Namespace, connect_redis
from peepers_common.settings import StackSettings
from peepers_common.topics import PEEPERS_MESSAGES, PEEPERS_SELLERS
from peepers_messages.backfill import RedisBackfillCheckpoints
from peepers_messages.settings import Settings as MessagesSettings
from peepers_sandbox.client import SandboxAdmin
from peepers_sandbox.config import MarketplaceConfig, NotifierConfig, SandboxConfig
from tests.integration.ingest.support import free_port
from tests.integration.messages.worker import READER, WorkerRun, messages_topics, worker_process
from tests.support import unique


@contextmanager
def sandbox(workdir: Path, items: int) -> Iterator[tuple[str, int]]:
    config = SandboxConfig(
        marketplace=MarketplaceConfig(
            sellers=1,
            items_per_seller=items,
            orders_per_seller=0,
            questions_per_seller=0,
            claims_per_seller=0,
        ),
        notifier=NotifierConfig(enabled=False),
    )
    config.rate_limits.rules = []
    path = workdir / "sandbox.json"
    path.write_text(config.model_dump_json())
    port = free_port()
    with (workdir / "sandbox.log").open("ab") as out:
        process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "peepers_sandbox", "--config", str(path), "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_port(port, timeout_s=120)
        url = f"http://127.0.0.1:{port}"
        import urllib.request

        with urllib.request.urlopen(f"{url}/_admin/info") as response:  # noqa: S310 - loopback
            info = json.loads(response.read())
        yield url, int(info["sellers"][0])
    finally:
        process.terminate()
        process.wait()


async def unanswered_questions(admin: SandboxAdmin, seller: int, count: int) -> None:
    """``count`` unanswered questions of ``seller``, on random items of theirs."""
    gate = asyncio.Semaphore(16)

    async def one(n: int) -> None:
        async with gate:
            await admin.event("question", seller_id=seller, text=f"Tem garantia? {n}")

    await asyncio.gather(*(one(n) for n in range(count)))


async def cleanup_scope(scope: str) -> None:
    """Delete the scratch scope's keys: the worker's and its rate limiter's."""
    admin = connect_redis(StackSettings().redis)
    try:
        for pattern in (f"messages:{scope}:*", f"ratelimit*{scope}*"):
            keys = [key async for key in admin.scan_iter(match=pattern, count=5000)]
            for start in range(0, len(keys), 1000):
                await admin.unlink(*keys[start : start + 1000])
    finally:
        await admin.aclose()


async def ml_requests(http: aiohttp.ClientSession, run: WorkerRun) -> dict[str, float]:
    """The worker's ML requests so far, by endpoint family."""
    async with http.get(f"{run.url}/metrics") as response:
        text = await response.text()
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("peepers_ml_requests_total{"):
            labels, value = line.rsplit(" ", 1)
            family = labels.split('family="', 1)[1].split('"', 1)[0]
            found[family] = found.get(family, 0.0) + float(value)
    return found


async def connect(run: WorkerRun, seller: int) -> None:
    event = SellerConnected(
        event_id=uuid4(),
        occurred_at=datetime.now(UTC),
        seller_id=seller,
        nickname="BENCH",
        site_id="MLB",
    )
    async with AIOKafkaEventPublisher(run.kafka) as publisher:
        await publisher.publish(
            run.topic(PEEPERS_SELLERS),
            key=seller_event_key(event),
            value=event.model_dump_json().encode(),
        )


async def backfill_figure(
    http: aiohttp.ClientSession, run: WorkerRun, seller: int, per_minute: int
) -> dict[str, Any]:
    redis = connect_redis(MessagesSettings().redis)
    checkpoints = RedisBackfillCheckpoints(redis, Namespace("messages", scope=run.scope))
    try:
        before = await ml_requests(http, run)
        started = time.monotonic()
        await connect(run, seller)
        while True:
            state = await checkpoints.load(seller)
            if state is not None and state.phase == "done":
                break
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - started
    finally:
        await redis.aclose()
    after = await ml_requests(http, run)
    questions = after.get("questions", 0) - before.get("questions", 0)
    # The limiter adds a 1 s margin to every window (peepers_common.ml.ratelimit).
    bound = questions / (per_minute / 61)
    applied = sum(n for k, n in state.counts.items() if k.startswith("questions_"))
    return {
        "questions": applied,
        "question_requests": questions,
        "other_requests": sum(after.values()) - sum(before.values()) - questions,
        "elapsed_s": elapsed,
        "bound_s": bound,
        "ratio": elapsed / bound if bound else float("nan"),
    }


def webhook(run_id: str, seq: int, seller: int, question_id: int) -> bytes:
    return ml_webhook(f"{run_id}-{seq}", "questions", f"/questions/{question_id}", seller)


async def latency_figure(
    http: aiohttp.ClientSession,
    admin: SandboxAdmin,
    run: WorkerRun,
    ingest_url: str,
    seller: int,
    rate: float,
    duration: float,
) -> dict[str, Any]:
    sent_at: dict[int, float] = {}
    seen_at: dict[int, float] = {}
    consumer = AIOKafkaConsumer(
        run.topic(PEEPERS_MESSAGES),
        bootstrap_servers=run.kafka.bootstrap_servers,
        auto_offset_reset="latest",
        enable_auto_commit=False,
        group_id=unique("bench-read"),
    )
    await consumer.start()
    stop = asyncio.Event()

    async def collect() -> None:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100)
            now = time.monotonic()
            for records in batches.values():
                for record in records:
                    event = json.loads(record.value or b"{}")
                    if event.get("type") == "question.received":
                        seen_at.setdefault(int(event["question_id"]), now)
            check_seen()

    sending_done, all_seen = asyncio.Event(), asyncio.Event()

    def check_seen() -> None:
        if sending_done.is_set() and sent_at.keys() <= seen_at.keys():
            all_seen.set()

    reader = asyncio.create_task(collect())
    run_id, total = uuid4().hex[:8], int(rate * duration)
    failures = 0

    async def one(seq: int) -> None:
        nonlocal failures
        question = await admin.event("question", seller_id=seller, text=f"Bench {seq}?")
        sent_at[int(question["id"])] = time.monotonic()
        body = webhook(run_id, seq, seller, int(question["id"]))
        async with http.post(
            ingest_url, data=body, headers={"Content-Type": "application/json"}
        ) as response:
            if response.status != 200:
                failures += 1

    await asyncio.sleep(1)  # the reader's partitions assigned
    tasks = []
    start = time.monotonic()
    for seq in range(total):
        await asyncio.sleep(max(0.0, start + seq / rate - time.monotonic()))
        tasks.append(asyncio.create_task(one(seq)))
    await asyncio.gather(*tasks)
    sending_done.set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_seen.wait(), 30)
    stop.set()
    await reader
    await consumer.stop()
    latencies = [(seen_at[q] - sent_at[q]) * 1000 for q in sent_at if q in seen_at]
    return {
        "sent": len(sent_at),
        "seen": len(latencies),
        "webhook_failures": failures,
        "p50_ms": percentile(latencies, 0.50),
        "p95_ms": percentile(latencies, 0.95),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies, default=float("nan")),
    }


async def answer_figure(
    http: aiohttp.ClientSession, run: WorkerRun, seller: int, count: int
) -> dict[str, Any]:
    auth = {"Authorization": aiohttp.encode_basic_auth(*READER)}
    base = f"{run.url}/messages/sellers/{seller}"
    async with http.get(f"{base}/questions/inbox?limit={count}", headers=auth) as response:
        inbox = (await response.json())["questions"]
    took: list[float] = []
    for question in inbox[:count]:
        start = time.monotonic()
        async with http.post(
            f"{base}/questions/{question['id']}/answer",
            json={"text": "Temos sim, pode comprar!"},
            headers={**auth, "Idempotency-Key": uuid4().hex},
        ) as response:
            await response.read()
            if response.status != 200:
                log(f"answer refused: {response.status}")
                continue
        took.append((time.monotonic() - start) * 1000)
    return {
        "answers": len(took),
        "p50_ms": percentile(took, 0.50),
        "p99_ms": percentile(took, 0.99),
        "max_ms": max(took, default=float("nan")),
    }


async def main(args: argparse.Namespace) -> None:
    kafka = kafka_settings()
    with tempfile.TemporaryDirectory(prefix="bench-messages-") as tmp:
        workdir = Path(tmp)
        prefix = await messages_topics(kafka)
        ingest_port = free_port()
        log(f"sandbox: {args.items} items, {args.questions} unanswered questions")
        with sandbox(workdir, args.items) as (sandbox_url, seller):
            ingest = start_ingest(ingest_port, prefix, workdir / "spool", workdir / "ingest.log")
            scope = unique("bench")
            try:
                async with (
                    aiohttp.ClientSession() as http,
                    token_broker(SandboxAdmin(sandbox_url, http)) as broker,
                ):
                    await unanswered_questions(
                        SandboxAdmin(sandbox_url, http), seller, args.questions
                    )
                    run = WorkerRun(
                        prefix=prefix,
                        kafka=kafka,
                        sandbox_url=sandbox_url,
                        broker_url=broker,
                        log=workdir / "messages.log",
                        scope=scope,
                        app_id=unique("bench-messages"),
                        extra_env={
                            "MESSAGES_LOG_LEVEL": "WARNING",
                            "MESSAGES_ML__APP_LIMIT": "null",
                            "MESSAGES_ML__FAMILY_LIMITS": json.dumps(
                                {"questions": {"amount": args.questions_per_minute, "per_s": 60}}
                            ),
                        },
                    )
                    with worker_process(run) as process:
                        while not await run.ready():
                            if process.poll() is not None:
                                sys.exit(f"the worker did not start:\n{run.log_tail()}")
                            await asyncio.sleep(0.2)
                        results = await _figures(http, run, sandbox_url, ingest_port, seller, args)
                    print(json.dumps(results, indent=2))
            finally:
                ingest.terminate()
                ingest.wait()
                await cleanup_scope(scope)


async def _figures(
    http: aiohttp.ClientSession,
    run: WorkerRun,
    sandbox_url: str,
    ingest_port: int,
    seller: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    log("1. backfill")
    backfilled = await backfill_figure(http, run, seller, args.questions_per_minute)
    log(f"   {backfilled}")
    log(f"2. webhook -> inbox at {args.rate:g}/s for {args.duration:g} s")
    latency = await latency_figure(
        http,
        SandboxAdmin(sandbox_url, http),
        run,
        f"http://127.0.0.1:{ingest_port}{PATH}",
        seller,
        args.rate,
        args.duration,
    )
    log(f"   {latency}")
    log(f"3. {args.answers} answers through the API")
    answers = await answer_figure(http, run, seller, args.answers)
    log(f"   {answers}")
    return {"backfill": backfilled, "webhook_to_inbox": latency, "answer_round_trip": answers}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--questions", type=int, default=5000)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--answers", type=int, default=100)
    parser.add_argument("--questions-per-minute", type=int, default=6000)
    return parser.parse_args(argv)


if __name__ == "__main__":
    run_then_delete_topics(main(parse()))
