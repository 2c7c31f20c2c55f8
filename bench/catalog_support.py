"""What the catalog benches share: a sandbox process, a stand-in token broker, scratch
Redis scopes and topics, the catalog worker process and its memory.

The stand-in broker is not the auth service: it answers the auth service's internal
token API (``GET /internal/sellers/{id}/token``, ``POST .../token/refresh``) with tokens
minted by the sandbox's admin API, without checking service credentials, so a bench needs
no browser login. Everything else (sandbox, Redis, Kafka, the worker) is real.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from uuid import uuid4

import aiohttp
from aiohttp import web

from bench.ingest import APP_ID, wait_port
from peepers_catalog.adapters.redis_sync import RedisSyncCheckpoints
from peepers_catalog.ports import SyncState
from peepers_catalog.settings import Settings as CatalogSettings
from peepers_common.events import SellerConnected, seller_event_key
from peepers_common.kafka import AIOKafkaEventPublisher
from peepers_common.namespaces import Namespace, connect_redis
from peepers_common.settings import KafkaSettings, StackSettings
from peepers_common.topic_admin import delete_topics_containing
from peepers_common.topics import PEEPERS_SELLERS
from peepers_devstack.metrics import percentiles
from peepers_sandbox.client import SandboxAdmin
from peepers_sandbox.config import MarketplaceConfig, NotifierConfig, SandboxConfig
from tests.integration.catalog.worker import WorkerRun
from tests.integration.ingest.support import free_port
from tests.support import SESSION_TOKEN, unique

BROKER_SERVICE = "catalog"
BROKER_SECRET = "bench-broker-secret"  # noqa: S105 - the stand-in checks no credentials


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_then_delete_topics(main: Coroutine[Any, Any, None]) -> None:
    """Run a bench's ``main``, then delete the Kafka topics it named (even when it failed).

    Every scratch name comes from `tests.support.unique`, which carries this process's
    token: thousands of leftover topics slow the local broker down for every later run.
    """
    try:
        asyncio.run(main)
    finally:
        asyncio.run(delete_topics_containing(kafka_settings(), f"-{SESSION_TOKEN}"))


def kafka_settings() -> KafkaSettings:
    return StackSettings().kafka


# ---------------------------------------------------------------- sandbox process
@dataclass
class SandboxProcess:
    url: str
    process: subprocess.Popen[bytes]
    seller: int


def one_seller_catalog(items: int) -> SandboxConfig:
    """A sandbox of one seller with ``items`` items and nothing else, notifier off."""
    return SandboxConfig(
        marketplace=MarketplaceConfig(
            sellers=1,
            items_per_seller=items,
            orders_per_seller=0,
            questions_per_seller=0,
            claims_per_seller=0,
        ),
        notifier=NotifierConfig(enabled=False),
    )


@contextmanager
def sandbox_process(workdir: Path, items: int) -> Iterator[SandboxProcess]:
    """``python -m peepers_sandbox``: one seller with `items` items, no notifier, no limits."""
    with sandbox_of(workdir, one_seller_catalog(items), timeout_s=60 + items / 2000) as sandbox:
        yield sandbox


@contextmanager
def sandbox_of(workdir: Path, config: SandboxConfig, timeout_s: float) -> Iterator[SandboxProcess]:
    """``python -m peepers_sandbox`` with `config`, its own rate limits off."""
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
        wait_port(port, timeout_s=timeout_s)
        url = f"http://127.0.0.1:{port}"
        yield SandboxProcess(url, process, _first_seller(url))
    finally:
        process.terminate()
        process.wait()


def _first_seller(url: str) -> int:
    import urllib.request

    with urllib.request.urlopen(f"{url}/_admin/info") as response:  # noqa: S310 - loopback
        info = json.loads(response.read())
    return int(info["sellers"][0])


def ml_webhook(notification_id: str, topic: str, resource: str, seller: int) -> bytes:
    """The body ML POSTs for a notification, stamped now."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return json.dumps(
        {
            "_id": notification_id,
            "resource": resource,
            "user_id": seller,
            "topic": topic,
            "application_id": APP_ID,
            "attempts": 1,
            "sent": now,
            "received": now,
        },
        separators=(",", ":"),
    ).encode()


# ---------------------------------------------------------------- token broker stand-in
@asynccontextmanager
async def token_broker(admin: SandboxAdmin) -> AsyncIterator[str]:
    """Serve the broker's token API on a free loopback port; yields its base URL."""
    minted: dict[int, dict[str, Any]] = {}

    async def grant(seller: int, *, fresh: bool) -> web.Response:
        if fresh or seller not in minted:
            minted[seller] = await admin.mint_token(seller)
        token = minted[seller]
        return web.json_response(
            {
                "access_token": token["access_token"],
                "expires_in": token["expires_in"],
                "expires_at": time.time() + token["expires_in"],
            }
        )

    async def get_token(request: web.Request) -> web.Response:
        return await grant(int(request.match_info["seller"]), fresh=False)

    async def refresh(request: web.Request) -> web.Response:
        return await grant(int(request.match_info["seller"]), fresh=True)

    app = web.Application()
    app.router.add_get("/internal/sellers/{seller}/token", get_token)
    app.router.add_post("/internal/sellers/{seller}/token/refresh", refresh)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


# ---------------------------------------------------------------- Redis scratch scopes
async def cleanup_scope(scope: str) -> int:
    """Delete every key of a scratch scope: the catalog's and its rate limiter's."""
    admin = connect_redis(StackSettings().redis)
    deleted = 0
    try:
        for pattern in (f"catalog:{scope}:*", f"ratelimit*{scope}*"):
            batch: list[Any] = []
            async for key in admin.scan_iter(match=pattern, count=5000):
                batch.append(key)
                if len(batch) >= 1000:
                    deleted += await admin.unlink(*batch)
                    batch = []
            if batch:
                deleted += await admin.unlink(*batch)
    finally:
        await admin.aclose()
    return deleted


# ---------------------------------------------------------------- the worker process
def worker_run(
    prefix: str, sandbox_url: str, broker_url: str, workdir: Path, **env: str
) -> WorkerRun:
    """A worker deployment on scratch topics and a scratch Redis scope (bench-named)."""
    return WorkerRun(
        prefix=prefix,
        kafka=kafka_settings(),
        sandbox_url=sandbox_url,
        broker_url=broker_url,
        broker_service=BROKER_SERVICE,
        broker_secret=BROKER_SECRET,
        log=workdir / "catalog.log",
        scope=unique("bench"),
        app_id=unique("bench-catalog"),
        extra_env={"CATALOG_LOG_LEVEL": "WARNING", **env},
    )


async def wait_ready(run: WorkerRun, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not await run.ready():
        if process.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"the catalog worker did not start:\n{run.log_tail()}")
        await asyncio.sleep(0.2)


class Deployment(Protocol):
    """A consumer deployment on scratch topics (catalog's, orders', messages' runs)."""

    kafka: KafkaSettings

    def topic(self, name: str) -> str: ...


async def connect_seller(run: Deployment, seller: int) -> None:
    """Publish ``seller.connected`` on the worker's sellers topic: it starts a full sync
    (the catalog) or a backfill (orders, messages)."""
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


async def sync_state(run: WorkerRun, seller: int) -> SyncState | None:
    redis = connect_redis(CatalogSettings().redis)
    try:
        return await RedisSyncCheckpoints(redis, Namespace("catalog", scope=run.scope)).load(seller)
    finally:
        await redis.aclose()


# ---------------------------------------------------------------- process memory
def memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a live process in KiB: its resident set now and at its peak."""
    found = {"VmRSS": 0, "VmHWM": 0}
    with suppress(OSError), open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in found:
                found[name] = int(value.split()[0])
    return found["VmRSS"], found["VmHWM"]


async def sampled_peak(pid: int, stop: asyncio.Event, every_s: float = 0.1) -> int:
    """Sample VmRSS until `stop` is set; the largest sample in KiB (VmHWM is exact)."""
    peak = 0
    while not stop.is_set():
        peak = max(peak, memory_kib(pid)[0])
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
    return peak


async def seller_item_ids(
    session: aiohttp.ClientSession, url: str, seller: int, token: str
) -> list[str]:
    """Every item id of the seller, by ``search_type=scan`` straight at the sandbox."""
    ids: list[str] = []
    params = {"search_type": "scan", "limit": "100"}
    headers = {"Authorization": f"Bearer {token}"}
    while True:
        async with session.get(
            f"{url}/users/{seller}/items/search", params=params, headers=headers
        ) as response:
            page = await response.json()
        if not page["results"]:
            return ids
        ids.extend(page["results"])
        params["scroll_id"] = page["scroll_id"]


def percentile(values: list[float], q: float) -> float:
    """The `q` quantile (0..1) by nearest rank over the sorted values; NaN when empty."""
    return percentiles(values, [q * 100]).get(q * 100, float("nan"))
