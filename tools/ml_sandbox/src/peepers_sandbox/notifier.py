"""The notifier: POSTs ML-shaped notifications to each application's callback URL.

An attempt fails when the answer is not 200 or arrives after ``deadline_ms``. A failed
notification is retried after the configured gaps (divided by ``time_compression``),
with ``attempts`` incremented; when the gaps run out it lands in ``/missed_feeds``.
Every attempt is logged, so a test can prove that nothing was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import secrets
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from peepers_sandbox.clock import Clock, iso_z
from peepers_sandbox.config import AppConfig, NotifierConfig

_HEADERS = {"accept": "application/json", "content-type": "application/json"}


@dataclass
class Notification:
    id: str
    app_id: int
    url: str
    topic: str
    source_topic: str
    user_id: int
    resource: str
    actions: list[str] | None
    received_ms: int
    attempts: int = 0
    state: str = "pending"
    sent_ms: int = 0
    history: list[int | None] = field(default_factory=list)
    # None, or the chaos that made it: duplicate_same_id, duplicate_new_id, noop.
    chaos: str | None = None
    held_ms: float = 0.0


class Notifier:
    def __init__(self, cfg: NotifierConfig, apps: dict[int, AppConfig], clock: Clock) -> None:
        self.cfg = cfg
        self.apps = apps
        self.clock = clock
        self.has_grant: Any = None  # set by the app: Callable[[int, int], bool]
        self.notifications: dict[str, Notification] = {}
        self.attempt_log: deque[dict[str, Any]] = deque(maxlen=cfg.attempt_log_size)
        self.missed: list[tuple[float, Notification, dict[str, Any]]] = []
        self.changes = 0
        self.stats = {
            "notifications": 0,
            "delivered": 0,
            "missed": 0,
            "attempts": 0,
            "failed_attempts": 0,
            "duplicate_same_id": 0,
            "duplicate_new_id": 0,
            "noop": 0,
            "held": 0,
        }
        # Seeded: chaos is reproducible in what it does, if not in timing.
        self._chaos_rng = random.Random(cfg.chaos.seed)  # noqa: S311
        self._recent: deque[tuple[str, int, str, list[str] | None]] = deque(maxlen=256)
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._queue: asyncio.Queue[Notification] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._timers: set[asyncio.TimerHandle] = set()
        self._session: aiohttp.ClientSession | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        local_addr = (self.cfg.source_address, 0) if self.cfg.source_address else None
        connector = aiohttp.TCPConnector(limit=self.cfg.concurrency, local_addr=local_addr)
        self._session = aiohttp.ClientSession(connector=connector)
        self._workers = [asyncio.create_task(self._worker()) for _ in range(self.cfg.concurrency)]

    async def aclose(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers = []
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------ intake
    def notify(self, topic: str, user_id: int, resource: str, actions: list[str] | None) -> None:
        """The marketplace's change hook: one notification per subscribed application."""
        self.changes += 1
        if not self.cfg.enabled:
            return
        chaos = self.cfg.chaos
        rng = self._chaos_rng
        if chaos.enabled and self._recent and rng.random() < chaos.noop_rate:
            # A resource notified before and unchanged since: ML's "invisible" change.
            self._fan_out(*rng.choice(self._recent), chaos="noop")
        self._recent.append((topic, user_id, resource, actions))
        self._fan_out(topic, user_id, resource, actions)

    def _fan_out(
        self,
        topic: str,
        user_id: int,
        resource: str,
        actions: list[str] | None,
        chaos: str | None = None,
    ) -> None:
        quirks = self.cfg.quirks
        out_topic = quirks.claims_topic if topic == "post_purchase" else topic
        if topic == "messages" and quirks.messages_resource_bare_id:
            resource = resource.removeprefix("/messages/")
        elif topic == "post_purchase" and not quirks.claims_resource_leading_slash:
            resource = resource.lstrip("/")
        elif topic == "items_prices" and quirks.items_prices_resource == "item":
            resource = resource.removesuffix("/prices")
        now_ms = self.clock.tick_ms()
        for app in self.apps.values():
            if not app.callback_url or (topic not in app.topics and out_topic not in app.topics):
                continue
            if (
                self.cfg.require_grant
                and self.has_grant is not None
                and not self.has_grant(app.app_id, user_id)
            ):
                continue
            notification = Notification(
                self._new_id(),
                app.app_id,
                app.callback_url,
                out_topic,
                topic,
                user_id,
                resource,
                actions,
                now_ms,
                chaos=chaos,
            )
            self.notifications[notification.id] = notification
            self._enqueue(notification)
            self._duplicate(notification)

    def _new_id(self) -> str:
        return str(uuid.uuid4()) if self.cfg.quirks.id_style == "uuid" else secrets.token_hex(12)

    def _duplicate(self, original: Notification) -> None:
        """Chaos: send ``duplicates`` more copies, with the same ``_id`` or a new one."""
        chaos = self.cfg.chaos
        rng = self._chaos_rng
        if not chaos.enabled or original.chaos is not None or rng.random() >= chaos.duplicate_rate:
            return
        for _ in range(chaos.duplicates):
            new_id = rng.random() < chaos.new_id_share
            copy = Notification(
                self._new_id() if new_id else original.id,
                original.app_id,
                original.url,
                original.topic,
                original.source_topic,
                original.user_id,
                original.resource,
                original.actions,
                original.received_ms,
                chaos="duplicate_new_id" if new_id else "duplicate_same_id",
            )
            if new_id:
                self.notifications[copy.id] = copy
            self._enqueue(copy)

    def _enqueue(self, n: Notification) -> None:
        self.stats["notifications"] += 1
        if n.chaos is not None:
            self.stats[n.chaos] += 1
        self._pending += 1
        self._idle.clear()
        window_ms = self.cfg.chaos.reorder_window_ms if self.cfg.chaos.enabled else 0
        if not window_ms:
            self._queue.put_nowait(n)
            return
        # Chaos: hold each notification up to the window, so later ones may overtake it.
        n.held_ms = round(self._chaos_rng.uniform(0, window_ms), 1)
        self.stats["held"] += 1
        self._later(n.held_ms / 1000, n)

    def _later(self, delay_s: float, n: Notification) -> None:
        loop = asyncio.get_running_loop()
        timer: asyncio.TimerHandle | None = None

        def fire() -> None:
            if timer is not None:
                self._timers.discard(timer)
            self._queue.put_nowait(n)

        timer = loop.call_later(delay_s, fire)
        self._timers.add(timer)

    def body(self, n: Notification) -> dict[str, Any]:
        quirks = self.cfg.quirks
        body: dict[str, Any] = {}
        if not (n.topic == "orders_v2" and quirks.orders_v2_omit_id):
            body["id" if n.actions is not None and quirks.subtopic_id_key == "id" else "_id"] = n.id
        body["resource"] = n.resource
        body["user_id"] = (
            str(n.user_id) if n.source_topic in quirks.string_user_id_topics else n.user_id
        )
        body["topic"] = n.topic
        if n.actions is not None:
            body["actions"] = n.actions
        body["application_id"] = n.app_id
        body["attempts"] = n.attempts
        body["sent"] = iso_z(n.sent_ms)
        body["received"] = iso_z(n.received_ms)
        return body

    # ------------------------------------------------------------------ delivery
    async def _worker(self) -> None:
        while True:
            notification = await self._queue.get()
            try:
                await self._attempt(notification)
            except Exception as exc:
                self._record_failure(notification, None, 0.0, repr(exc), None)

    async def _attempt(self, n: Notification) -> None:
        if self._session is None:
            msg = "the notifier is not started"
            raise RuntimeError(msg)
        n.attempts += 1
        n.sent_ms = max(self.clock.tick_ms(), n.received_ms + 1)
        data = json.dumps(self.body(n), separators=(",", ":")).encode()
        self.stats["attempts"] += 1
        timeout = aiohttp.ClientTimeout(total=self.cfg.request_timeout_ms / 1000)
        started = time.perf_counter()
        status: int | None = None
        error: str | None = None
        response_info: dict[str, Any] | None = None
        try:
            async with self._session.post(
                n.url, data=data, headers=_HEADERS, timeout=timeout
            ) as resp:
                text = await resp.text(errors="replace")
                status = resp.status
                response_info = {"body": text[:2000], "headers": dict(resp.headers)}
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        latency_ms = (time.perf_counter() - started) * 1000
        ok = status == 200 and latency_ms <= self.cfg.deadline_ms
        if status is not None and status == 200 and not ok:
            error = f"answered after {latency_ms:.0f} ms (deadline {self.cfg.deadline_ms} ms)"
        self._log(n, data, status, latency_ms, ok, error)
        if ok:
            n.state = "delivered"
            n.history.append(status)
            self.stats["delivered"] += 1
            self._settle()
        else:
            self._record_failure(n, status, latency_ms, error, response_info, data)

    def _log(
        self,
        n: Notification,
        data: bytes,
        status: int | None,
        latency_ms: float,
        ok: bool,
        error: str | None,
    ) -> None:
        self.attempt_log.append(
            {
                "notification_id": n.id,
                "attempt": n.attempts,
                "url": n.url,
                "topic": n.topic,
                "resource": n.resource,
                "user_id": n.user_id,
                "application_id": n.app_id,
                "sent": iso_z(n.sent_ms),
                "status": status,
                "latency_ms": round(latency_ms, 2),
                "ok": ok,
                "error": error,
                "chaos": n.chaos,
                "held_ms": n.held_ms,
                "body": data.decode(),
            }
        )

    def _record_failure(
        self,
        n: Notification,
        status: int | None,
        latency_ms: float,
        error: str | None,
        response_info: dict[str, Any] | None,
        data: bytes | None = None,
    ) -> None:
        self.stats["failed_attempts"] += 1
        n.history.append(status)
        gaps = self.cfg.retry_gaps_s
        if n.attempts <= len(gaps):
            self._later(gaps[n.attempts - 1] / self.cfg.time_compression, n)
            return
        n.state = "missed"
        self.stats["missed"] += 1
        payload = (
            data.decode() if data is not None else json.dumps(self.body(n), separators=(",", ":"))
        )
        entry = {
            **self.body(n),
            "request": {
                "url": n.url,
                "headers": {**_HEADERS, "content-length": len(payload.encode())},
                "data": payload,
            },
            "response": {
                "req_time": round(latency_ms),
                "http_code": status,
                "body": (response_info or {}).get("body", error or ""),
                "headers": (response_info or {}).get("headers", {}),
            },
        }
        self.missed.append((self.clock.now(), n, entry))
        self._settle()

    def _settle(self) -> None:
        self._pending -= 1
        if self._pending == 0:
            self._idle.set()

    # ------------------------------------------------------------------ queries
    @property
    def pending(self) -> int:
        return self._pending

    async def wait_idle(self, within_s: float) -> None:
        await asyncio.wait_for(self._idle.wait(), within_s)

    def summary(self) -> dict[str, Any]:
        return {**self.stats, "pending": self._pending, "changes": self.changes}

    def missed_feeds(
        self, app_id: int, topic: str | None, offset: int, limit: int
    ) -> dict[str, Any]:
        horizon = self.clock.now() - self.cfg.missed_feeds_retention_s / self.cfg.time_compression
        self.missed = [m for m in self.missed if m[0] >= horizon]
        entries = [
            e
            for _, n, e in self.missed
            if n.app_id == app_id and (topic is None or n.topic == topic)
        ]
        return {
            "messages": entries[offset : offset + limit],
            "paging": {"total": len(entries), "offset": offset, "limit": limit},
        }
