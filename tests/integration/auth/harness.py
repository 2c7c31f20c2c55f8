"""Run auth app replicas against the real Redis and Kafka and an in-process ML sandbox."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web
from aiokafka import ConsumerRecord
from pydantic import SecretStr

from peepers_auth.adapters.redis_store import RedisSellerStore
from peepers_auth.app import create_app
from peepers_auth.crypto import TokenCipher
from peepers_auth.models import SellerRecord
from peepers_auth.settings import OAuthSettings, Settings
from peepers_common.kafka import read_to_end
from peepers_common.namespaces import Namespace, connect_redis
from peepers_common.settings import KafkaSettings, MlApiSettings, MlLimit, RedisSettings
from peepers_common.topics import AUTH_SELLERS_CHANGELOG, topic_spec
from peepers_sandbox.app import Sandbox, run_sandbox
from peepers_sandbox.config import (
    DEMO_APP_ID,
    DEMO_CLIENT_SECRET,
    ApiConfig,
    AppConfig,
    MarketplaceConfig,
    NotifierConfig,
    SandboxConfig,
)
from tests.support import SERVER_STOP_WAIT_S, create_topic, unique, wait_until

SERVICE = "catalog"
SERVICE_SECRET = "catalog-broker-secret-0123456789"  # noqa: S105 - a test credential
SELLER = 3000000001  # the sandbox's first seller


class MovableClock:
    """Wall time plus an offset, moved together with the sandbox's clock."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset_s


def bound_socket() -> socket.socket:
    """A listening socket on a free port, so the URL is known before the app is built."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    return sock


@dataclass
class AuthStack:
    sandbox: Sandbox
    settings: Settings
    namespace: Namespace
    topic: str
    changelog_topic: str
    clock: MovableClock
    urls: list[str]
    cipher: TokenCipher
    redis: aioredis.Redis
    extra_redirect_uris: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.urls[0]

    @property
    def store(self) -> RedisSellerStore:
        return RedisSellerStore(self.redis, self.namespace, self.cipher)

    async def record(self, seller_id: int = SELLER) -> SellerRecord | None:
        return await self.store.get(seller_id)

    async def advance(self, seconds: float) -> None:
        """Move ML's time and ours together (a token 'just expired' without waiting)."""
        await self.sandbox.admin.advance_clock(seconds)
        self.clock.offset_s += seconds

    async def oauth_calls(self) -> int:
        """Requests ML's OAuth endpoints received (the sandbox counts them per family)."""
        counters = await self.sandbox.admin.rate_limit_counters()
        return sum(c["total"] for c in counters if c["family"] == "oauth")

    def browser(self) -> aiohttp.ClientSession:
        # unsafe: cookies for an IP host (127.0.0.1), as a browser keeps them.
        return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    def service_auth(self) -> dict[str, str]:
        """The calling service's HTTP Basic credentials, as headers."""
        return {"Authorization": aiohttp.encode_basic_auth(SERVICE, SERVICE_SECRET)}

    def known_tokens(self) -> set[str]:
        """Every access and refresh token (and code) the sandbox ever issued and kept."""
        oauth = self.sandbox.state.oauth
        tokens = set(oauth.tokens)
        tokens |= {grant.refresh_token for grant in oauth.grants.values()}
        tokens |= set(oauth.codes)
        return tokens


def auth_settings(
    sandbox_url: str, public_url: str, *, redirect_uri: str | None = None, key: str
) -> Settings:
    return Settings(
        ml=MlApiSettings(
            base_url=sandbox_url,
            app_id=DEMO_APP_ID,
            client_secret=SecretStr(DEMO_CLIENT_SECRET),
            read_timeout_s=5.0,
            # Auth takes permits of the app's budget; after a Redis loss its window is held
            # (6.25 s counted on 5 s windows, not a minute's 62 s), as the e2e tests do.
            app_limit=MlLimit(amount=300, per_s=5),
        ),
        oauth=OAuthSettings(
            redirect_uri=redirect_uri or f"{public_url}/auth/callback",
            auth_base_urls={"MLB": sandbox_url, "MLA": sandbox_url},
        ),
        token_keys=[SecretStr(key)],
        service_credentials={SERVICE: SecretStr(SERVICE_SECRET)},
        public_base_url=public_url,
        refresh_wait_s=15.0,
        status_count_every_s=0.2,
    )


async def _serve(app: web.Application, sock: socket.socket, stack: AsyncExitStack) -> None:
    # No access log: the callback's query carries an authorization code (and production
    # runs without one too, see __main__).
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SERVER_STOP_WAIT_S)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    await web.SockSite(runner, sock).start()


@asynccontextmanager
async def auth_stack(
    kafka: KafkaSettings,
    *,
    replicas: int = 1,
    auto_approve: bool = True,
    extra_redirect_paths: Sequence[str] = (),
    topic: str | None = None,
    redis: RedisSettings | None = None,
    sellers: int = 1,
) -> AsyncIterator[AuthStack]:
    """Sandbox + ``replicas`` auth apps on one Redis namespace, one events topic (uuid-named
    unless ``topic`` names an existing one) and their own changelog topic.

    ``redis`` points the apps at another Redis (a server of the test's own, to flush).
    """
    sockets = [bound_socket() for _ in range(replicas + len(extra_redirect_paths))]
    urls = [f"http://127.0.0.1:{s.getsockname()[1]}" for s in sockets]
    public_url = urls[0]
    extra_uris = [
        f"{url}{path}" for url, path in zip(urls[replicas:], extra_redirect_paths, strict=True)
    ]
    config = SandboxConfig(
        apps=[AppConfig(redirect_uris=[f"{public_url}/auth/callback", *extra_uris])],
        api=ApiConfig(auto_approve=auto_approve),
        marketplace=MarketplaceConfig(
            sellers=sellers,
            items_per_seller=3,
            orders_per_seller=1,
            questions_per_seller=1,
            claims_per_seller=0,
            buyers=2,
        ),
        notifier=NotifierConfig(enabled=False),
    )
    async with AsyncExitStack() as stack:
        for sock in sockets:
            stack.callback(sock.close)
        sandbox = await stack.enter_async_context(run_sandbox(config))
        topic = topic or await create_topic(kafka)
        changelog_topic = await create_topic(kafka, like=topic_spec(AUTH_SELLERS_CHANGELOG))
        namespace = Namespace("auth", scope=unique())
        clock = MovableClock()
        key = TokenCipher.generate_key()
        settings = auth_settings(sandbox.url, public_url, key=key)
        if redis is not None:
            settings = settings.model_copy(update={"redis": redis})
        client = connect_redis(settings.redis)
        stack.push_async_callback(client.aclose)
        for sock in sockets[:replicas]:
            app = create_app(
                settings,
                namespace=namespace,
                topic=topic,
                changelog_topic=changelog_topic,
                clock=clock,
            )
            await _serve(app, sock, stack)
        built = AuthStack(
            sandbox=sandbox,
            settings=settings,
            namespace=namespace,
            topic=topic,
            changelog_topic=changelog_topic,
            clock=clock,
            urls=urls[:replicas],
            cipher=TokenCipher([SecretStr(key)]),
            redis=client,
            extra_redirect_uris=extra_uris,
        )
        # Extra instances share everything but answer on another registered redirect URI.
        for sock, uri in zip(sockets[replicas:], extra_uris, strict=True):
            other = settings.model_copy(
                update={"oauth": settings.oauth.model_copy(update={"redirect_uri": uri})}
            )
            app = create_app(
                other,
                namespace=namespace,
                topic=topic,
                changelog_topic=changelog_topic,
                clock=clock,
            )
            await _serve(app, sock, stack)
        yield built


async def login(stack: AuthStack, browser: aiohttp.ClientSession) -> str:
    """The whole login, following every redirect (auto-approving sandbox); the final HTML.

    First, auth must be ready, as Kubernetes waits for it before it routes a request: its
    sellers' view may still be restoring from a changelog topic made a moment ago (on a
    fresh broker its metadata can lag), and until then it answers 503.
    """

    async def ready() -> bool:
        async with browser.get(f"{stack.url}/readyz") as response:
            return response.status == 200

    await wait_until(ready, timeout_s=30, every_s=0.1)
    async with browser.get(f"{stack.url}/auth/login?site=MLB") as response:
        assert response.status == 200, await response.text()
        assert urlsplit(str(response.url)).path == "/auth/dashboard"
        return await response.text()


async def authorization_redirect(stack: AuthStack, browser: aiohttp.ClientSession) -> str:
    """Start a login and let the auto-approving sandbox answer; the callback URL it gives."""
    async with browser.get(f"{stack.url}/auth/login", allow_redirects=False) as started:
        assert started.status == 302
        authorize = started.headers["Location"]
    async with browser.get(authorize, allow_redirects=False) as approved:
        assert approved.status == 302, await approved.text()
        return approved.headers["Location"]


async def read_all(kafka: KafkaSettings, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record in the topic right now: up to its end offsets, not up to a count."""
    return await read_to_end(kafka, [topic])


async def raw_values(admin: aioredis.Redis, namespace: Namespace) -> list[bytes]:
    """Every key and value under the namespace, as a dump of Redis would show them."""
    dumped: list[bytes | str] = []
    async for key in admin.scan_iter(match=namespace.prefix + "*"):
        dumped.append(key)
        kind = await admin.type(key)
        if kind == b"string":
            dumped.append(await admin.get(key) or b"")
        elif kind == b"hash":
            for name, value in (await admin.hgetall(key)).items():
                dumped.extend([name, value])
        elif kind == b"set":
            dumped.extend(await admin.smembers(key))
    return [v if isinstance(v, bytes) else v.encode() for v in dumped]


async def broker_token(
    http: aiohttp.ClientSession, stack: AuthStack, url: str | None = None, seller_id: int = SELLER
) -> tuple[int, Any]:
    """The token broker's answer (status, body) for a seller, asked as a service asks."""
    async with http.get(
        f"{url or stack.url}/internal/sellers/{seller_id}/token", headers=stack.service_auth()
    ) as response:
        return response.status, await response.json()


async def ml_me(stack: AuthStack, access_token: str) -> int:
    """ML's ``/users/me`` status for the token: 200 while ML accepts it."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{stack.sandbox.url}/users/me", headers={"Authorization": f"Bearer {access_token}"}
        ) as response,
    ):
        return response.status


def json_of(record: ConsumerRecord[bytes, bytes]) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(record.value or b"{}")
    return value
