"""A driver for lifecycle conformance tests: admin events in, ML's REST answers out.

It records every change the marketplace reports (topic, resource, actions), so a test can
count the notifications a change would send without a callback server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from peepers_sandbox import DEMO_SELLER_ID, Sandbox
from tests.sandbox.support import SmallSandbox, bearer

Change = tuple[str, str, list[str] | None]


@dataclass
class Driver:
    sb: Sandbox
    http: aiohttp.ClientSession
    tokens: dict[int, str] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)

    async def event(self, kind: str, **params: Any) -> dict[str, Any]:
        return await self.sb.admin.event(kind, **params)

    async def refused(self, kind: str, **params: Any) -> dict[str, Any]:
        """An event that must be refused: its status must be 4xx with ML's body."""
        async with self.http.post(f"/_admin/events/{kind}", json=params) as resp:
            body: dict[str, Any] = await resp.json()
            assert 400 <= resp.status < 500, body
            assert set(body) >= {"message", "error", "status", "cause"}
            return body

    async def token(self, user_id: int) -> str:
        if user_id not in self.tokens:
            # Long-lived, so a test may advance the sandbox clock by weeks.
            pair = await self.sb.admin.mint_token(user_id, expires_in=10**9)
            self.tokens[user_id] = pair["access_token"]
        return self.tokens[user_id]

    async def get(
        self,
        path: str,
        *,
        user_id: int = DEMO_SELLER_ID,
        status: int = 200,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        all_headers = bearer(await self.token(user_id)) | (headers or {})
        async with self.http.get(path, params=params, headers=all_headers) as resp:
            body = await resp.json()
            assert resp.status == status, body
            return body

    def topics(self, resource: str) -> list[str]:
        return [topic for topic, res, _ in self.changes if res == resource]

    def forget(self) -> None:
        self.changes.clear()


@asynccontextmanager
async def driving(small_sandbox: SmallSandbox, **overrides: Any) -> AsyncIterator[Driver]:
    sb = await small_sandbox(**overrides)
    async with aiohttp.ClientSession(sb.url) as http:
        driver = Driver(sb, http)
        market = sb.state.market
        hook = market.on_change

        def record(topic: str, user_id: int, resource: str, actions: list[str] | None) -> None:
            driver.changes.append((topic, resource, actions))
            if hook is not None:
                hook(topic, user_id, resource, actions)

        market.on_change = record
        yield driver
