"""The seller web app: a domain event on Kafka until it shows in open pages, and the
overview's server time.

Runs the web app in this process (its real middlewares, live feed, Redis sessions as the
``auth-web`` ACL user) in front of a stand-in of the read APIs (fixed JSON, so the time
measured is the web app's own), with ``--pages`` open pages spread over ``--sellers``
sellers. Each page is an SSE client that does what a browser page does on an event: it
fetches the part the event names (``GET /app/orders`` with ``HX-Request``). Then:

1. live: ``--events`` ``order.created`` events, ``--rate`` per second, round robin over the
   sellers, on a scratch topic; for every page of the event's seller, the time from just
   before the publish to the refreshed part received. Prints p50/p99/max over all
   (event, page) pairs and how many arrived.
2. overview: ``--requests`` sequential ``GET /app/`` of one page; p50/p99 of the
   response time on loopback (the stand-in's answers included, ~0.2 ms each).

    uv run python -m bench.web_live [--pages 50] [--sellers 10] [--events 200] [--rate 20]

Needs the stack (``scripts/stack up``: the ``auth-web`` user) with ``.stack/env`` sourced.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aiohttp
from aiohttp import web
from pydantic import SecretStr

from bench.catalog_support import kafka_settings, log, percentile, run_then_delete_topics
from peepers_auth.adapters.redis_store import RedisSessions
from peepers_auth.models import Session
from peepers_auth.settings import Settings as AuthSettings
from peepers_auth.web.app import create_web_app
from peepers_auth.web.settings import ReadApi, WebSettings
from peepers_common.errors import InfrastructureError
from peepers_common.kafka import AIOKafkaEventPublisher, end_offsets
from peepers_common.namespaces import Namespace, connect_redis
from peepers_common.settings import KafkaSettings
from tests.integration.auth.harness import bound_socket
from tests.support import create_topic, unique, wait_until

FIRST_SELLER = 6_000_000_000
SERVICE = ("web", "bench-web-secret")


def seller_of(page: int, sellers: int) -> int:
    return FIRST_SELLER + page % sellers


def event_body(seller_id: int, sequence: int) -> bytes:
    """An ``order.created`` as the orders service publishes it (the web app reads it
    generically: type, seller_id, order_id)."""
    return json.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "occurred_at": datetime.now(UTC).isoformat(),
            "seller_id": seller_id,
            "type": "order.created",
            "order_id": sequence,
        }
    ).encode()


def latencies(sent: dict[int, float], seen: list[tuple[int, float]]) -> list[float]:
    """Milliseconds from publish to part received, per (event, page) that saw it."""
    return [(at - sent[seq]) * 1000 for seq, at in seen if seq in sent]


# ---------------------------------------------------------------- the read APIs' stand-in
def _stub_api() -> web.Application:
    today = datetime.now(UTC).date()
    days = [
        {
            "day": (today - timedelta(days=n)).isoformat(),
            "orders": n % 5,
            "revenue": {"BRL": "99.90"},
        }
        for n in range(30)
    ]

    def order(seller: int, order_id: int) -> dict[str, object]:
        return {
            "order_id": order_id,
            "seller_id": seller,
            "state": "paid",
            "buyer_id": 1,
            "currency_id": "BRL",
            "total_amount": "99.90",
            "date_created": datetime.now(UTC).isoformat(),
            "lines": [{"title": "Caneca", "quantity": 1, "unit_price": "99.90"}],
        }

    async def analytics(request: web.Request) -> web.Response:
        return web.json_response({"days": days})

    async def orders(request: web.Request) -> web.Response:
        seller = int(request.match_info["seller"])
        return web.json_response({"orders": [order(seller, i) for i in range(25)]})

    async def inbox(request: web.Request) -> web.Response:
        return web.json_response({"questions": [], "total": 0})

    async def tickets(request: web.Request) -> web.Response:
        return web.json_response({"tickets": [], "total": 0})

    async def conversations(request: web.Request) -> web.Response:
        return web.json_response({"conversations": []})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"unanswered_questions": 3, "open_tickets": 0})

    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"status": "ready"})

    app = web.Application()
    app.router.add_get("/orders/sellers/{seller}/analytics", analytics)
    app.router.add_get("/orders/sellers/{seller}/orders", orders)
    app.router.add_get("/messages/sellers/{seller}/questions/inbox", inbox)
    app.router.add_get("/messages/sellers/{seller}/tickets", tickets)
    app.router.add_get("/messages/sellers/{seller}/stats", stats)
    app.router.add_get("/messages/sellers/{seller}/conversations", conversations)
    app.router.add_get("/readyz", ready)
    return app


@asynccontextmanager
async def _serve(app: web.Application) -> AsyncIterator[str]:
    sock = bound_socket()
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        await runner.cleanup()
        sock.close()


# ---------------------------------------------------------------- pages
@dataclass
class Pages:
    url: str
    cookies: list[str]
    expected: int
    seen: list[tuple[int, float]] = field(default_factory=list)
    open: int = 0
    all_seen: asyncio.Event = field(default_factory=asyncio.Event)


async def _page(pages: Pages, cookie: str, opened: asyncio.Event, total: int) -> None:
    headers = {"Cookie": f"peepers_session={cookie}"}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.get(f"{pages.url}/app/live", timeout=aiohttp.ClientTimeout()) as stream,
    ):
        pages.open += 1
        if pages.open == total:
            opened.set()
        async for line in stream.content:
            if not line.startswith(b"data: "):
                continue
            sequence = int(json.loads(line[6:])["ref"])
            async with http.get(f"{pages.url}/app/orders", headers={"HX-Request": "true"}) as part:
                await part.read()
            pages.seen.append((sequence, time.monotonic()))
            if len(pages.seen) >= pages.expected:
                pages.all_seen.set()


async def _visible(kafka: KafkaSettings, topics: list[str]) -> None:
    """Wait until the new topics show in the broker's metadata (a loaded broker lags)."""

    async def described() -> bool:
        try:
            await end_offsets(kafka, topics)
        except InfrastructureError:
            return False
        return True

    await wait_until(described, timeout_s=30, every_s=0.5)


async def main(args: argparse.Namespace) -> None:
    kafka = kafka_settings()
    topic = await create_topic(kafka, partitions=3)
    sellers_topic = await create_topic(kafka)
    await _visible(kafka, [topic, sellers_topic])
    namespace = Namespace("auth", scope=unique("bench"))
    writer = connect_redis(AuthSettings().redis)
    sessions = RedisSessions(writer, namespace)
    cookies = [
        await sessions.create(
            Session(
                seller_id=seller_of(i, args.sellers),
                csrf_token=SecretStr(uuid.uuid4().hex),
                created_at=time.time(),
            ),
            ttl_s=3600,
        )
        for i in range(args.pages)
    ]
    try:
        async with _serve(_stub_api()) as api:
            settings = WebSettings(
                service_name=SERVICE[0],
                service_secret=SecretStr(SERVICE[1]),
                orders=ReadApi(base_url=api),
                messages=ReadApi(base_url=api),
                catalog=ReadApi(base_url=api),
                log_level="WARNING",
            )
            app = create_web_app(
                settings, namespace=namespace, live_topics=[topic], sellers_topic=sellers_topic
            )
            async with _serve(app) as url:
                await _run(args, url, cookies, topic)
    finally:
        await writer.aclose()


async def _run(args: argparse.Namespace, url: str, cookies: list[str], topic: str) -> None:
    pages = Pages(url, cookies, expected=args.events * args.pages // args.sellers)
    opened = asyncio.Event()
    tasks = [asyncio.create_task(_page(pages, c, opened, len(cookies))) for c in cookies]
    try:
        await asyncio.wait_for(opened.wait(), 30)
        log(f"{len(cookies)} pages open over {args.sellers} sellers")
        sent: dict[int, float] = {}
        async with AIOKafkaEventPublisher(kafka_settings()) as publisher:
            for sequence in range(args.events):
                seller = FIRST_SELLER + sequence % args.sellers
                sent[sequence] = time.monotonic()
                await publisher.publish(
                    topic, key=str(seller).encode(), value=event_body(seller, sequence)
                )
                await asyncio.sleep(1 / args.rate)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(pages.all_seen.wait(), 10)
        values = latencies(sent, pages.seen)
        log(
            f"live: {len(values)}/{pages.expected} (event, page) updates; "
            "publish -> part refreshed "
            f"p50 {percentile(values, 0.5):.1f} ms, p99 {percentile(values, 0.99):.1f} ms, "
            f"max {max(values, default=float('nan')):.1f} ms"
        )
        await _overview(url, cookies[0], args.requests)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                await task


async def _overview(url: str, cookie: str, requests: int) -> None:
    times: list[float] = []
    headers = {"Cookie": f"peepers_session={cookie}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        for _ in range(requests):
            started = time.perf_counter()
            async with http.get(f"{url}/app/") as response:
                await response.read()
                if response.status != 200:
                    msg = f"the overview answered {response.status}"
                    raise RuntimeError(msg)
            times.append((time.perf_counter() - started) * 1000)
    log(
        f"overview: {requests} requests, p50 {percentile(times, 0.5):.1f} ms, "
        f"p99 {percentile(times, 0.99):.1f} ms"
    )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.web_live", description=__doc__)
    parser.add_argument("--pages", type=int, default=50)
    parser.add_argument("--sellers", type=int, default=10)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--requests", type=int, default=200)
    return parser.parse_args(argv)


if __name__ == "__main__":
    run_then_delete_topics(main(parse()))
