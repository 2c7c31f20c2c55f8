"""The app factory and the in-process runner.

```python
async with run_sandbox(SandboxConfig(port=0)) as sb:
    token = await sb.admin.mint_token(user_id=DEMO_SELLER_ID)
    async with aiohttp.ClientSession(sb.url) as http: ...
```
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

import aiohttp
from aiohttp import web

from peepers_sandbox.admin import admin_errors, setup_admin_routes
from peepers_sandbox.api import api_middleware, setup_api_routes
from peepers_sandbox.client import SandboxAdmin
from peepers_sandbox.config import SandboxConfig
from peepers_sandbox.routes.common import state_key
from peepers_sandbox.state import SandboxState

# How long a stopping sandbox lets requests in flight finish before cancelling them.
STOP_WAIT_S: Final = 5.0


def create_app(config: SandboxConfig, *, state: SandboxState | None = None) -> web.Application:
    app = web.Application(middlewares=[api_middleware, admin_errors])
    app[state_key] = state if state is not None else SandboxState.build(config)
    setup_api_routes(app)
    setup_admin_routes(app)
    app.cleanup_ctx.append(_lifecycle)
    return app


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    st = app[state_key]
    await st.notifier.start()
    if st.config.activity_rate > 0:
        st.activity.start(st.config.activity_rate, st.config.activity_mix)
    yield
    await st.activity.stop()
    await st.notifier.aclose()


@dataclass
class Sandbox:
    """A running sandbox: its base URL, its in-memory state and an admin client."""

    url: str
    state: SandboxState
    admin: SandboxAdmin
    runner: web.AppRunner

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


@asynccontextmanager
async def run_sandbox(config: SandboxConfig | None = None) -> AsyncIterator[Sandbox]:
    """Serve a sandbox on ``config.host:config.port`` (0 picks a free port) until exit."""
    config = config if config is not None else SandboxConfig()
    app = create_app(config)
    runner = web.AppRunner(
        app,
        access_log=logging.getLogger("aiohttp.access") if config.access_log else None,
        # A stopping sandbox (Ctrl-C, a test's end) cancels what is still in flight after
        # a few seconds, not aiohttp's 60: a request held by the slow fault, or whose client
        # was killed mid-request, would otherwise hold the stop for a minute.
        shutdown_timeout=STOP_WAIT_S,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port, reuse_address=True)
        await site.start()
        port = int(runner.addresses[0][1])
        url = f"http://{config.host}:{port}"
        async with aiohttp.ClientSession() as session:
            yield Sandbox(
                url=url, state=app[state_key], admin=SandboxAdmin(url, session), runner=runner
            )
    finally:
        await runner.cleanup()
