"""Reading the running stack over HTTP: readiness, the sync's progress, the live summary."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp

from peepers_devstack import prometheus
from peepers_devstack.metrics import Scrape, percentiles
from peepers_devstack.plan import READER, Plan
from peepers_sandbox.client import SandboxAdmin

# The notifier attempts the latency percentiles are taken over (the most recent ones).
LATENCY_WINDOW: Final = 2000
PERCENTILES: Final = (50.0, 95.0, 99.0, 100.0)
_WORD: Final = re.compile(r"[^\W\d_]{4,}")


async def answers_200(session: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with session.get(url) as response:
            return response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


async def accepts(host: str, port: int) -> bool:
    """Whether something accepts a TCP connection on ``host:port``."""
    try:
        _reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


async def scrape(session: aiohttp.ClientSession, url: str) -> Scrape:
    try:
        async with session.get(f"{url}/metrics") as response:
            if response.status != 200:
                return Scrape.empty()
            return Scrape.parse(await response.text())
    except (aiohttp.ClientError, TimeoutError):
        return Scrape.empty()


@dataclass
class SyncProgress:
    """The catalog's full sync of one seller, as its sync process's metrics and log tell it."""

    running: bool = False
    expected: int = 0
    processed: int = 0
    finished_line: str | None = None

    @property
    def done(self) -> bool:
        if self.finished_line is not None:
            return True
        return not self.running and self.expected > 0 and self.processed >= self.expected


class SyncWatcher:
    """Follows the sync process's metrics, and its log for the line a finished sync writes."""

    def __init__(self, plan: Plan, session: aiohttp.ClientSession, worker_log: Path) -> None:
        self._plan = plan
        self._session = session
        self._log = worker_log
        self._offset = 0
        self._marker = f"full sync of seller {plan.seller_id}:"

    async def poll(self) -> SyncProgress:
        metrics = await scrape(self._session, self._plan.catalog_sync_url)
        seller = str(self._plan.seller_id)
        progress = SyncProgress(
            running=metrics.total("peepers_catalog_sync_running", seller=seller) > 0,
            expected=int(metrics.total("peepers_catalog_sync_items_expected", seller=seller)),
            processed=int(metrics.total("peepers_catalog_sync_items_total", seller=seller)),
        )
        progress.finished_line = self._finished_line()
        return progress

    def _finished_line(self) -> str | None:
        try:
            with self._log.open("rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except OSError:
            return None
        # Only whole lines move the offset, so a line written in two parts is still found.
        cut = chunk.rfind(b"\n") + 1
        self._offset += cut
        for line in chunk[:cut].decode(errors="replace").splitlines():
            if self._marker in line:
                return line
        return None


@dataclass
class Search:
    query: str
    total: int
    titles: list[str]
    took_ms: float


@dataclass
class Sales:
    """Today's sales, in the orders service's analytics timezone."""

    orders: int
    revenue: dict[str, str]


@dataclass
class WebFigures:
    """The seller web app: pages with a live stream open, and updates sent to them."""

    open_pages: float
    live_updates: float


@dataclass
class Summary:
    uptime_s: float
    # The sandbox's notifier: what ML sent and how ingest answered it.
    notifications: int = 0
    delivered: int = 0
    failed_attempts: int = 0
    pending: int = 0
    latency_ms: dict[float, float] = field(default_factory=dict)
    latency_sample: int = 0
    changes: int = 0
    activity_rate: float = 0.0
    # ingest's own counts.
    ingest: dict[str, float] = field(default_factory=dict)
    rejected: float = 0.0
    spool_depth: float = 0.0
    # The catalog.
    items_cached: int | None = None
    applied: dict[str, float] = field(default_factory=dict)
    events: dict[str, float] = field(default_factory=dict)
    dead_lettered: float = 0.0
    parked: float = 0.0
    search: Search | None = None
    # The orders worker: its read API (None: it did not answer) and its mailer.
    orders_by_state: dict[str, int] | None = None
    sales_today: Sales | None = None
    emails_sent: float = 0.0
    orders_dead_lettered: float = 0.0
    # The messages worker.
    unanswered: float = 0.0
    open_tickets: float = 0.0
    answered: float = 0.0
    time_to_answer_median_s: float | None = None
    messages_dead_lettered: float = 0.0
    # The seller web app (None: not run).
    web: WebFigures | None = None
    # Prometheus's alerts (None: not running, or it did not answer).
    alerts: prometheus.Alerts | None = None

    @property
    def events_total(self) -> int:
        return int(sum(self.events.values()))


class SummaryCollector:
    def __init__(
        self, plan: Plan, session: aiohttp.ClientSession, admin: SandboxAdmin, started: float
    ) -> None:
        self._plan = plan
        self._session = session
        self._admin = admin
        self._started = started
        self._reader = aiohttp.BasicAuth(READER, plan.secrets.reader)
        self._words: list[str] = []
        self._turn = 0

    async def collect(self) -> Summary:
        summary = Summary(uptime_s=time.monotonic() - self._started)
        await self._notifier(summary)
        ingest = await scrape(self._session, self._plan.ingest_url)
        summary.ingest = ingest.by("peepers_ingest_notifications_total", "outcome")
        summary.rejected = ingest.total("peepers_ingest_rejected_total")
        summary.spool_depth = ingest.total("peepers_ingest_spool_depth")
        # Webhooks' and syncs' counts: the catalog's two processes (CATALOG_ROLE).
        urls = (self._plan.catalog_url, self._plan.catalog_sync_url)
        scrapes = [await scrape(self._session, url) for url in urls]
        catalog = Scrape([sample for one in scrapes for sample in one.samples])
        summary.applied = catalog.by("peepers_catalog_items_applied_total", "outcome")
        summary.events = catalog.by("peepers_catalog_events_published_total", "type")
        summary.dead_lettered = _dead_lettered(catalog)
        summary.parked = catalog.total("peepers_consumer_failures_total", fate="parked")
        summary.items_cached, summary.search = await self._catalog_api()
        await self._orders(summary)
        await self._messages(summary)
        if self._plan.web_app:
            web = await scrape(self._session, self._plan.web_url)
            summary.web = WebFigures(
                web.total("peepers_web_open_pages"), web.total("peepers_web_live_events_total")
            )
        if self._plan.prometheus_binary is not None:
            summary.alerts = await prometheus.alerts(self._session, self._plan.prometheus_url)
        return summary

    async def _orders(self, summary: Summary) -> None:
        metrics = await scrape(self._session, self._plan.orders_url)
        mailer = await scrape(self._session, self._plan.mailer_url)
        summary.emails_sent = mailer.total("peepers_orders_emails_total", outcome="sent")
        summary.orders_dead_lettered = _dead_lettered(metrics)
        base = f"{self._plan.orders_url}/orders/sellers/{self._plan.seller_id}"
        by_state = await self._get(f"{base}/summary", {})
        if by_state is not None:
            summary.orders_by_state = {k: int(v) for k, v in by_state["by_state"].items() if v}
        # The API's default range ends today in its own timezone: that day's figures.
        figures = await self._get(f"{base}/analytics", {})
        if figures is not None:
            today: list[dict[str, Any]] = [d for d in figures["days"] if d["day"] == figures["to"]]
            summary.sales_today = (
                Sales(int(today[0]["orders"]), dict(today[0]["revenue"])) if today else Sales(0, {})
            )

    async def _messages(self, summary: Summary) -> None:
        metrics = await scrape(self._session, self._plan.messages_url)
        seller = str(self._plan.seller_id)
        summary.unanswered = metrics.total("peepers_messages_unanswered_questions", seller=seller)
        summary.open_tickets = metrics.total("peepers_messages_open_tickets", seller=seller)
        summary.answered = metrics.total("peepers_messages_time_to_answer_seconds_count")
        # The median: the sandbox's seeded history answers some questions months late,
        # which would swamp a mean of the answers made live.
        summary.time_to_answer_median_s = metrics.histogram_quantile(
            "peepers_messages_time_to_answer_seconds", 0.5
        )
        summary.messages_dead_lettered = _dead_lettered(metrics)

    async def _notifier(self, summary: Summary) -> None:
        stats = await self._admin.notifier_summary()
        summary.notifications = int(stats["notifications"])
        summary.delivered = int(stats["delivered"])
        summary.failed_attempts = int(stats["failed_attempts"])
        summary.pending = int(stats["pending"])
        summary.changes = int(stats["changes"])
        attempts = await self._admin.notifier_attempts(limit=str(LATENCY_WINDOW))
        latencies = [float(a["latency_ms"]) for a in attempts]
        summary.latency_ms = percentiles(latencies, PERCENTILES)
        summary.latency_sample = len(latencies)
        async with self._session.get(f"{self._plan.sandbox_url}/_admin/activity") as response:
            summary.activity_rate = float((await response.json())["rate"])

    async def _catalog_api(self) -> tuple[int | None, Search | None]:
        """The seller's live items, and one search for a word of a cached title."""
        base = f"{self._plan.catalog_url}/catalog/sellers/{self._plan.seller_id}/items"
        page = await self._get(base, {"limit": "20", "sort": "-updated"})
        if page is None:
            return None, None
        if not self._words:
            self._words = _words(item.get("title", "") for item in page["items"])
        if not self._words:
            return int(page["total"]), None
        query = self._words[self._turn % len(self._words)]
        self._turn += 1
        started = time.perf_counter()
        found = await self._get(base, {"q": query, "limit": "3", "sort": "-sold"})
        took_ms = (time.perf_counter() - started) * 1000
        if found is None:
            return int(page["total"]), None
        titles = [str(item.get("title", "")) for item in found["items"]]
        return int(page["total"]), Search(query, int(found["total"]), titles, took_ms)

    async def _get(self, url: str, params: dict[str, str]) -> dict[str, Any] | None:
        try:
            async with self._session.get(url, params=params, auth=self._reader) as response:
                if response.status != 200:
                    return None
                body: dict[str, Any] = await response.json()
                return body
        except (aiohttp.ClientError, TimeoutError):
            return None


def _dead_lettered(metrics: Scrape) -> float:
    return metrics.total("peepers_consumer_failures_total", fate="dead_lettered")


def _words(titles: Any) -> list[str]:
    seen: dict[str, None] = {}
    for title in titles:
        for word in _WORD.findall(str(title)):
            seen.setdefault(word.lower(), None)
    return list(seen)[:12]
