"""The web process beside a real auth process: same Redis (each as its own ACL user)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from peepers_auth.web.app import create_web_app
from peepers_auth.web.ports import Readers
from peepers_auth.web.settings import WebSettings
from peepers_common.namespaces import Namespace
from tests.integration.auth.harness import AuthStack, bound_socket
from tests.support import SERVER_STOP_WAIT_S


@dataclass
class WebProcess:
    url: str
    settings: WebSettings
    app: web.Application


@asynccontextmanager
async def web_process(
    stack: AuthStack,
    *,
    readers: Readers | None = None,
    live_topics: Sequence[str] = (),
    sellers_topic: str | None = None,
    namespace: Namespace | None = None,
    **overrides: Any,
) -> AsyncIterator[WebProcess]:
    """The web app on a free port, configured from the environment (AUTH_WEB_*) as in a pod."""
    sock = bound_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = WebSettings(public_base_url=url, auth_base_url=stack.url, **overrides)
    app = create_web_app(
        settings,
        readers=readers,
        namespace=namespace or stack.namespace,
        live_topics=live_topics,
        sellers_topic=sellers_topic or stack.topic,
        follow_kafka=sellers_topic is not None or bool(live_topics),
    )
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SERVER_STOP_WAIT_S)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        yield WebProcess(url, settings, app)
    finally:
        await runner.cleanup()
        sock.close()
