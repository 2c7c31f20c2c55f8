"""Helpers for tests that drive the sandbox: a scriptable notification receiver."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web


class NotificationSink:
    """Receives the notifier's POSTs; ``behaviour`` decides each answer (status, delay_s)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.behaviour: Callable[[dict[str, Any]], tuple[int, float]] = lambda _body: (200, 0.0)
        self.url = ""
        self._changed = asyncio.Condition()

    async def _handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        status, delay_s = self.behaviour(body)
        async with self._changed:
            self.received.append(body)
            self._changed.notify_all()
        if delay_s:
            await asyncio.sleep(delay_s)
        return web.Response(status=status, text="ok")

    async def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], bool], within_s: float = 5.0
    ) -> None:
        """Wait until ``predicate(received)`` holds; TimeoutError at the deadline."""

        async def until() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: predicate(self.received))

        await asyncio.wait_for(until(), within_s)

    def for_resource(self, resource: str) -> list[dict[str, Any]]:
        return [n for n in self.received if n.get("resource") == resource]


@asynccontextmanager
async def serve_sink(host: str = "127.0.0.1") -> AsyncIterator[NotificationSink]:
    sink = NotificationSink()
    app = web.Application()
    app.router.add_post("/notifications", sink._handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, 0)
        await site.start()
        sink.url = f"http://{host}:{runner.addresses[0][1]}/notifications"
        yield sink
    finally:
        await runner.cleanup()
