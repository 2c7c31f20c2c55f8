"""Helpers for the sandbox conformance tests (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from peepers_sandbox import DEMO_SELLER_ID, Sandbox

OTHER_SELLER_ID = DEMO_SELLER_ID + 1
NO_PKCE_APP_ID = 7700000000000001
NO_PKCE_SECRET = "no-pkce-secret"  # noqa: S105
NO_PKCE_REDIRECT = "http://localhost:9000/cb"

SmallSandbox = Callable[..., Awaitable[Sandbox]]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def eventually(check: Callable[[], Awaitable[Any]], within_s: float = 5.0) -> Any:
    """Poll ``check`` until it returns a truthy value; fail at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        result = await check()
        if result:
            return result
        if loop.time() >= deadline:
            msg = f"condition not met within {within_s} s"
            raise TimeoutError(msg)
        await asyncio.sleep(0.01)
