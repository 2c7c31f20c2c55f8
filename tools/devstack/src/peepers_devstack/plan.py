"""What runs: ports, generated secrets, and each child's command line and environment.

Every child listens on loopback. Ports default to 18080 and up, away from the services'
own defaults (8080-8084, sandbox 8090, Prometheus 9090) that docker compose and a
hand-started service use; ``--port-base 0`` picks free ports instead (tests).
"""

from __future__ import annotations

import base64
import json
import random
import secrets
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from uuid import uuid4

from pydantic import BaseModel, Field

from peepers_sandbox.config import DEMO_APP_ID, DEMO_CLIENT_SECRET, DEMO_SELLER_ID

LOOPBACK = "127.0.0.1"
# The catalog's read API is called by this tool under this service name.
READER = "devstack"
# ... and by the seller web app under this one.
WEB_READER = "web"
# The catalog's sync process runs at this niceness (`nice -n`): below the webhooks'
# processes, as a deployment gives its sync pod a smaller CPU share (docs/catalog.md).
SYNC_NICE = 10
# How long a child has to stop after SIGTERM before the orchestrator kills it.
STOP_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Ports:
    sandbox: int
    auth: int
    ingest: int
    catalog: int
    prometheus: int
    orders: int
    # The local SMTP server (aiosmtpd) the orders worker mails sellers through.
    smtp: int
    messages: int
    # The seller web app (python -m peepers_auth web).
    web: int = 0
    # The orders mailer's probes and metrics (python -m peepers_orders mailer).
    mailer: int = 0
    # The catalog's sync process (CATALOG_ROLE=sync): its probes and metrics.
    catalog_sync: int = 0

    @classmethod
    def from_base(cls, base: int) -> Ports:
        if base == 0:
            return cls(
                sandbox=free_port(),
                auth=free_port(),
                ingest=free_port(),
                catalog=free_port(),
                prometheus=free_port(),
                orders=free_port(),
                smtp=free_port(),
                messages=free_port(),
                web=free_port(),
                mailer=free_port(),
                catalog_sync=free_port(),
            )
        return cls(
            sandbox=base + 10,
            auth=base + 1,
            ingest=base,
            catalog=base + 3,
            prometheus=base + 9,
            orders=base + 2,
            smtp=base + 25,
            messages=base + 4,
            web=base + 5,
            mailer=base + 6,
            catalog_sync=base + 7,
        )

    def taken(self) -> list[int]:
        """The ports something already listens on."""
        ports = (
            self.sandbox,
            self.auth,
            self.ingest,
            self.catalog,
            self.prometheus,
            self.orders,
            self.smtp,
            self.messages,
            self.web,
            self.mailer,
            self.catalog_sync,
        )
        return [port for port in ports if in_use(port)]


def run_id_offset(now_s: float | None = None) -> int:
    """The sandbox's id offset for a run: a million ids per second of the clock.

    Each run's marketplace is new, but Peepers' own state (the email ledger, tickets,
    submissions) lives on in Kafka and is keyed by ML's ids, which ML never reuses: with
    one seed, the next run's orders would carry the last run's ids and find their mail
    already sent. Runs start seconds apart, and a run makes far fewer than a million
    orders, claims or questions; the clock wraps after about 11 days, long after a run's
    ledger entries stop mattering to a demo.
    """
    seconds = int(time.time() if now_s is None else now_s)
    return (seconds % 1_000_000) * 1_000_000


# Where a free port for a child is picked: below the kernel's ephemeral range (32768-60999
# by default). A port the kernel hands out for binding 0 is one of those, and once
# released, any process's next outbound connection (a Kafka or Redis client) may take it
# before the child binds it: CI met a worker failing on "address already in use" so.
_PICK_FROM: Final = range(20000, 32768)


_GIVEN: set[int] = set()  # handed out by this process: a plan's children bind later


def free_port() -> int:
    """A port on loopback nothing listens on now, outside the ephemeral range.

    Never the same one twice in a process: the ports of one plan are all picked before
    any child binds them.
    """
    for _ in range(200):
        port = random.choice(_PICK_FROM)  # noqa: S311 - not a secret
        if port in _GIVEN:
            continue
        with socket.socket() as sock:
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port
    msg = f"no free port on {LOOPBACK} in {_PICK_FROM.start}-{_PICK_FROM.stop - 1}"
    raise OSError(msg)


def in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((LOOPBACK, port)) == 0


class Secrets(BaseModel):
    """Generated once per stack and kept in ``.stack/secrets/devstack.json`` (mode 600).

    They outlive one run on purpose: auth's Redis records are sealed with the token key,
    and a second ``make run`` must still open them (a new key would orphan them).
    """

    token_key: str
    catalog_broker: str
    ingest_broker: str
    reader: str
    # Added with the orders worker: a secrets file written before it gets one on load.
    orders_broker: str = Field(default_factory=lambda: secrets.token_urlsafe(24))
    messages_broker: str = Field(default_factory=lambda: secrets.token_urlsafe(24))
    # The seller web app's credential towards the read APIs (never the token broker's).
    web_reader: str = Field(default_factory=lambda: secrets.token_urlsafe(24))

    @classmethod
    def load_or_create(cls, path: Path) -> Secrets:
        if path.exists():
            return cls.model_validate_json(path.read_text())
        made = cls(
            # A Fernet key: urlsafe base64 of 32 random bytes (docs/auth.md).
            token_key=base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            catalog_broker=secrets.token_urlsafe(24),
            ingest_broker=secrets.token_urlsafe(24),
            reader=secrets.token_urlsafe(24),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(made.model_dump_json())
        return made


@dataclass(frozen=True)
class ChildSpec:
    name: str
    argv: list[str]
    env: dict[str, str]


@dataclass(frozen=True)
class Plan:
    ports: Ports
    secrets: Secrets
    spool_dir: Path
    items: int
    ml_requests_per_minute: int
    seller_id: int = DEMO_SELLER_ID
    # Names this run's catalog state: its consumer group and Redis scope (peepers_devstack.state).
    isolation: str = field(default_factory=lambda: f"run-{uuid4().hex[:8]}")
    id_offset: int = field(default_factory=run_id_offset)
    # Debian's prometheus binary, when installed, and the directory of its configuration
    # (peepers_devstack.prometheus writes it) and data.
    prometheus_binary: Path | None = None
    prometheus_dir: Path | None = None
    # Run the seller web app, and send a completed login to its overview.
    web_app: bool = False

    @property
    def sandbox_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.sandbox}"

    @property
    def auth_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.auth}"

    @property
    def ingest_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.ingest}"

    @property
    def catalog_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.catalog}"

    @property
    def catalog_sync_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.catalog_sync}"

    @property
    def prometheus_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.prometheus}"

    @property
    def webhook_url(self) -> str:
        return f"{self.ingest_url}/webhooks/mercadolibre"

    @property
    def redirect_uri(self) -> str:
        return f"{self.auth_url}/auth/callback"

    @property
    def web_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.web}"

    @property
    def dashboard_url(self) -> str:
        """The dashboard, already logged in: one click through the sandbox's consent page.

        The sandbox approves at once; the login lands on the seller web app's overview
        (auth's own dashboard when the web app does not run).
        """
        return f"{self.auth_url}/auth/login?site=MLB"

    @property
    def landing_url(self) -> str:
        """Where a completed login lands: the web app's overview, else auth's dashboard."""
        return f"{self.web_url}/app/" if self.web_app else f"{self.auth_url}/auth/dashboard"

    @property
    def orders_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.orders}"

    @property
    def mail_dir(self) -> Path:
        """Where the SMTP sink keeps each mail it received (a Maildir: ``new/`` holds them)."""
        return self.spool_dir.parent / "mail"

    @property
    def messages_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.messages}"

    @property
    def messages_group(self) -> str:
        return f"peepers-messages-{self.isolation}"

    @property
    def orders_group(self) -> str:
        return f"peepers-orders-{self.isolation}"

    @property
    def catalog_group(self) -> str:
        return f"peepers-catalog-{self.isolation}"

    @property
    def catalog_sync_group(self) -> str:
        """The sync process's group (peepers_catalog.app: ``<app id>-sync``)."""
        return f"{self.catalog_group}-sync"

    @property
    def mailer_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.mailer}"

    @property
    def mailer_group(self) -> str:
        return f"{self.orders_group}-mailer"

    def children(self) -> list[ChildSpec]:
        """In start order; they are stopped in the reverse one."""
        services = self.services()
        if self.prometheus_binary is None:
            return services
        return [*services, self.prometheus()]

    def services(self) -> list[ChildSpec]:
        """The children that are Peepers or stand in for ML (not Prometheus)."""
        # The web app right after auth: the login lands on its overview.
        front = [self.auth(), self.web()] if self.web_app else [self.auth()]
        return [
            self.sandbox(),
            *front,
            self.ingest(),
            self.catalog(),
            self.catalog_sync(),
            # Before the orders worker, which mails through it.
            self.mail_sink(),
            self.orders(),
            self.mailer(),
            self.messages(),
        ]

    @property
    def prometheus_config(self) -> Path:
        if self.prometheus_dir is None:
            msg = "this plan has no Prometheus"
            raise ValueError(msg)
        # "peepers_" in its command line: a run killed outright leaves prometheus behind,
        # and the next run stops leftovers whose command line says they are ours.
        return self.prometheus_dir / "peepers_prometheus.yml"

    def prometheus(self) -> ChildSpec:
        if self.prometheus_binary is None or self.prometheus_dir is None:
            msg = "this plan has no Prometheus"
            raise ValueError(msg)
        argv = [
            str(self.prometheus_binary),
            f"--config.file={self.prometheus_config}",
            f"--storage.tsdb.path={self.prometheus_dir / 'data'}",
            "--storage.tsdb.retention.time=2d",
            f"--web.listen-address={LOOPBACK}:{self.ports.prometheus}",
        ]
        return ChildSpec("prometheus", argv, {})

    def sandbox(self) -> ChildSpec:
        argv = [
            *_python("peepers_sandbox"),
            "--host", LOOPBACK,
            "--port", str(self.ports.sandbox),
            # One seller: the one who logs in (the notifier posts for every seller).
            "--sellers", "1",
            "--items-per-seller", str(self.items),
            # A marketplace whose ids no earlier run used (peepers_devstack.state).
            "--id-offset", str(self.id_offset),
            "--callback-url", self.webhook_url,
            "--redirect-uri", self.redirect_uri,
            "--auto-approve",
        ]  # fmt: skip
        return ChildSpec("sandbox", argv, {})

    def auth(self) -> ChildSpec:
        env = {
            "AUTH_HTTP_HOST": LOOPBACK,
            "AUTH_HTTP_PORT": str(self.ports.auth),
            "AUTH_ML__BASE_URL": self.sandbox_url,
            "AUTH_ML__APP_ID": str(DEMO_APP_ID),
            "AUTH_ML__CLIENT_SECRET": DEMO_CLIENT_SECRET,
            **self._ml_budget("AUTH"),
            "AUTH_OAUTH__REDIRECT_URI": self.redirect_uri,
            "AUTH_OAUTH__AUTH_BASE_URLS": json.dumps({"MLB": self.sandbox_url}),
            "AUTH_PUBLIC_BASE_URL": self.auth_url,
            "AUTH_TOKEN_KEYS": json.dumps([self.secrets.token_key]),
            "AUTH_SERVICE_CREDENTIALS": json.dumps(
                {
                    "catalog": self.secrets.catalog_broker,
                    "orders": self.secrets.orders_broker,
                    "messages": self.secrets.messages_broker,
                    "ingest": self.secrets.ingest_broker,
                }
            ),
        }
        if self.web_app:
            env["AUTH_DASHBOARD_URL"] = self.landing_url
        return ChildSpec("auth", _python("peepers_auth"), env)

    def web(self) -> ChildSpec:
        """The seller web app: no token key and no broker credential.

        It reads sessions as the Redis user auth-web (.stack/env) and the read APIs as "web".
        """
        env = {
            "AUTH_WEB_HTTP_HOST": LOOPBACK,
            "AUTH_WEB_HTTP_PORT": str(self.ports.web),
            "AUTH_WEB_PUBLIC_BASE_URL": self.web_url,
            "AUTH_WEB_AUTH_BASE_URL": self.auth_url,
            "AUTH_WEB_SERVICE_NAME": WEB_READER,
            "AUTH_WEB_SERVICE_SECRET": self.secrets.web_reader,
            "AUTH_WEB_CATALOG__BASE_URL": self.catalog_url,
            "AUTH_WEB_ORDERS__BASE_URL": self.orders_url,
            "AUTH_WEB_MESSAGES__BASE_URL": self.messages_url,
        }
        return ChildSpec("web", [*_python("peepers_auth"), "web"], env)

    def ingest(self) -> ChildSpec:
        env = {
            "INGEST_HTTP_HOST": LOOPBACK,
            "INGEST_HTTP_PORT": str(self.ports.ingest),
            "INGEST_APPLICATION_ID": str(DEMO_APP_ID),
            # The sandbox's notifier posts from loopback, not from ML's addresses.
            "INGEST_ALLOWED_CIDRS": json.dumps(["127.0.0.0/8"]),
            "INGEST_SPOOL_DIR": str(self.spool_dir),
            "INGEST_ML__BASE_URL": self.sandbox_url,
            **self._ml_budget("INGEST"),
            "INGEST_TOKEN_BROKER__URL": self.auth_url,
            "INGEST_TOKEN_BROKER__SERVICE": "ingest",
            "INGEST_TOKEN_BROKER__SECRET": self.secrets.ingest_broker,
            "INGEST_RECONCILE_SELLER_IDS": json.dumps([self.seller_id]),
        }
        return ChildSpec("ingest", _python("peepers_ingest"), env)

    def catalog(self) -> ChildSpec:
        env = {
            "CATALOG_HTTP_HOST": LOOPBACK,
            "CATALOG_HTTP_PORT": str(self.ports.catalog),
            "CATALOG_APP_ID": self.catalog_group,
            "CATALOG_ML__BASE_URL": self.sandbox_url,
            "CATALOG_ML__APP_ID": str(DEMO_APP_ID),
            "CATALOG_ML__CLIENT_SECRET": DEMO_CLIENT_SECRET,
            **self._ml_budget("CATALOG"),
            **_stop_within("CATALOG"),
            "CATALOG_TOKEN_BROKER__URL": self.auth_url,
            "CATALOG_TOKEN_BROKER__SERVICE": "catalog",
            "CATALOG_TOKEN_BROKER__SECRET": self.secrets.catalog_broker,
            "CATALOG_SERVICE_CREDENTIALS": json.dumps(self._readers()),
            "CATALOG_REDIS_SCOPE": self.isolation,
            # The webhooks here, the syncs in `catalog_sync` (docs/catalog.md, Full sync).
            "CATALOG_ROLE": "items",
        }
        return ChildSpec("catalog", [*_python("peepers_catalog"), "worker"], env)

    def catalog_sync(self) -> ChildSpec:
        """The catalog's syncs in a process of their own, at a lower CPU priority."""
        items = self.catalog()
        env = {
            **items.env,
            "CATALOG_HTTP_PORT": str(self.ports.catalog_sync),
            "CATALOG_ROLE": "sync",
        }
        return ChildSpec("catalog-sync", ["nice", "-n", str(SYNC_NICE), *items.argv], env)

    def _ml_budget(self, service: str) -> dict[str, str]:
        """The app's one outbound budget, the same in every service that reaches ML.

        The same limit under the same scope (the consumers take theirs from their
        REDIS_SCOPE, the isolation): a service left at its default limit or scope was
        budgeted apart while the sandbox counted its requests with everyone's. The sandbox
        limits only messaging unless told (ML's real quota is lower: docs/ml-client.md).
        """
        return {
            f"{service}_ML__APP_LIMIT": json.dumps(
                {"amount": self.ml_requests_per_minute, "per_s": 60}
            ),
            f"{service}_ML__LIMITER_SCOPE": self.isolation,
        }

    def _readers(self) -> dict[str, str]:
        """Who may call a read API: this tool and the seller web app."""
        return {READER: self.secrets.reader, WEB_READER: self.secrets.web_reader}

    def mail_sink(self) -> ChildSpec:
        """aiosmtpd, a real SMTP server, keeping every mail in `mail_dir` (no TLS, no auth)."""
        argv = [
            *_python("aiosmtpd"),
            "--nosetuid",
            "--listen", f"{LOOPBACK}:{self.ports.smtp}",
            "--class", "aiosmtpd.handlers.Mailbox", str(self.mail_dir),
        ]  # fmt: skip
        return ChildSpec("mail", argv, {})

    def orders(self) -> ChildSpec:
        """The orders worker: mails go to `mail_sink`; its read API is called as READER."""
        env = {
            "ORDERS_HTTP_HOST": LOOPBACK,
            "ORDERS_HTTP_PORT": str(self.ports.orders),
            "ORDERS_APP_ID": self.orders_group,
            "ORDERS_MAIL__APP_ID": self.mailer_group,
            "ORDERS_ML__BASE_URL": self.sandbox_url,
            "ORDERS_ML__APP_ID": str(DEMO_APP_ID),
            "ORDERS_ML__CLIENT_SECRET": DEMO_CLIENT_SECRET,
            **self._ml_budget("ORDERS"),
            **_stop_within("ORDERS"),
            "ORDERS_TOKEN_BROKER__URL": self.auth_url,
            "ORDERS_TOKEN_BROKER__SERVICE": "orders",
            "ORDERS_TOKEN_BROKER__SECRET": self.secrets.orders_broker,
            "ORDERS_SMTP__HOST": LOOPBACK,
            "ORDERS_SMTP__PORT": str(self.ports.smtp),
            "ORDERS_SERVICE_CREDENTIALS": json.dumps(self._readers()),
            "ORDERS_REDIS_SCOPE": self.isolation,
        }
        return ChildSpec("orders", [*_python("peepers_orders"), "worker"], env)

    def mailer(self) -> ChildSpec:
        """The orders mailer: the orders worker's settings, its own process and port."""
        env = {**self.orders().env, "ORDERS_HTTP_PORT": str(self.ports.mailer)}
        return ChildSpec("mailer", [*_python("peepers_orders"), "mailer"], env)

    def messages(self) -> ChildSpec:
        """The messages worker (Q&A, conversations, tickets); its API is called as READER."""
        env = {
            "MESSAGES_HTTP_HOST": LOOPBACK,
            "MESSAGES_HTTP_PORT": str(self.ports.messages),
            "MESSAGES_APP_ID": self.messages_group,
            "MESSAGES_ML__BASE_URL": self.sandbox_url,
            "MESSAGES_ML__APP_ID": str(DEMO_APP_ID),
            "MESSAGES_ML__CLIENT_SECRET": DEMO_CLIENT_SECRET,
            **self._ml_budget("MESSAGES"),
            **_stop_within("MESSAGES"),
            "MESSAGES_TOKEN_BROKER__URL": self.auth_url,
            "MESSAGES_TOKEN_BROKER__SERVICE": "messages",
            "MESSAGES_TOKEN_BROKER__SECRET": self.secrets.messages_broker,
            "MESSAGES_SERVICE_CREDENTIALS": json.dumps(self._readers()),
            "MESSAGES_REDIS_SCOPE": self.isolation,
        }
        return ChildSpec("messages", [*_python("peepers_messages"), "worker"], env)


def _stop_within(service: str) -> dict[str, str]:
    """A Faust worker's own stop deadline, under the orchestrator's.

    It also holds when only the kernel's SIGTERM reaches the worker (the orchestrator
    was killed, so nothing follows that signal up).
    """
    return {f"{service}_STOP_WITHIN_S": str(STOP_TIMEOUT_S - 5)}


def _python(module: str) -> list[str]:
    return [sys.executable, "-m", module]
