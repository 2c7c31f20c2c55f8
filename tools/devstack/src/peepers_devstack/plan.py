"""What runs: ports, generated secrets, and each child's command line and environment.

Every child listens on loopback. Ports default to 18080 and up, away from the services'
own defaults (8080-8084, sandbox 8090) that docker compose and a hand-started service
use; ``--port-base 0`` picks free ports instead (tests).
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, Field

from peepers_sandbox.config import DEMO_APP_ID, DEMO_CLIENT_SECRET, DEMO_SELLER_ID

LOOPBACK = "127.0.0.1"
# The catalog's read API is called by this tool under this service name.
READER = "devstack"


@dataclass(frozen=True)
class Ports:
    sandbox: int
    auth: int
    ingest: int
    catalog: int
    messages: int

    @classmethod
    def from_base(cls, base: int) -> Ports:
        if base == 0:
            return cls(
                sandbox=free_port(),
                auth=free_port(),
                ingest=free_port(),
                catalog=free_port(),
                messages=free_port(),
            )
        return cls(
            sandbox=base + 10, auth=base + 1, ingest=base, catalog=base + 3, messages=base + 4
        )

    def taken(self) -> list[int]:
        """The ports something already listens on."""
        ports = (self.sandbox, self.auth, self.ingest, self.catalog, self.messages)
        return [port for port in ports if in_use(port)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


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
    # Added after the first stacks were made: a file without it gets one for this run
    # (auth and the messages worker get it from the same plan, so it always matches).
    messages_broker: str = Field(default_factory=lambda: secrets.token_urlsafe(24))

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
    # Set for a side-by-side run (tests): the catalog's own consumer group and Redis scope.
    isolation: str | None = None

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
    def messages_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.messages}"

    @property
    def webhook_url(self) -> str:
        return f"{self.ingest_url}/webhooks/mercadolibre"

    @property
    def redirect_uri(self) -> str:
        return f"{self.auth_url}/auth/callback"

    @property
    def catalog_group(self) -> str:
        return "peepers-catalog" if self.isolation is None else f"peepers-catalog-{self.isolation}"

    @property
    def messages_group(self) -> str:
        if self.isolation is None:
            return "peepers-messages"
        return f"peepers-messages-{self.isolation}"

    def children(self) -> list[ChildSpec]:
        """In start order; they are stopped in the reverse one."""
        return [self.sandbox(), self.auth(), self.ingest(), self.catalog(), self.messages()]

    def sandbox(self) -> ChildSpec:
        argv = [
            *_python("peepers_sandbox"),
            "--host", LOOPBACK,
            "--port", str(self.ports.sandbox),
            # One seller: the one who logs in (the notifier posts for every seller).
            "--sellers", "1",
            "--items-per-seller", str(self.items),
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
            "AUTH_OAUTH__REDIRECT_URI": self.redirect_uri,
            "AUTH_OAUTH__AUTH_BASE_URLS": json.dumps({"MLB": self.sandbox_url}),
            "AUTH_PUBLIC_BASE_URL": self.auth_url,
            "AUTH_TOKEN_KEYS": json.dumps([self.secrets.token_key]),
            "AUTH_SERVICE_CREDENTIALS": json.dumps(
                {
                    "catalog": self.secrets.catalog_broker,
                    "ingest": self.secrets.ingest_broker,
                    "messages": self.secrets.messages_broker,
                }
            ),
        }
        return ChildSpec("auth", _python("peepers_auth"), env)

    def ingest(self) -> ChildSpec:
        env = {
            "INGEST_HTTP_HOST": LOOPBACK,
            "INGEST_HTTP_PORT": str(self.ports.ingest),
            "INGEST_APPLICATION_ID": str(DEMO_APP_ID),
            # The sandbox's notifier posts from loopback, not from ML's addresses.
            "INGEST_ALLOWED_CIDRS": json.dumps(["127.0.0.0/8"]),
            "INGEST_SPOOL_DIR": str(self.spool_dir),
            "INGEST_ML__BASE_URL": self.sandbox_url,
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
            # The sandbox limits only messaging; ML's real quota is lower (docs/ml-client.md).
            "CATALOG_ML__APP_LIMIT": json.dumps(
                {"amount": self.ml_requests_per_minute, "per_s": 60}
            ),
            "CATALOG_TOKEN_BROKER__URL": self.auth_url,
            "CATALOG_TOKEN_BROKER__SERVICE": "catalog",
            "CATALOG_TOKEN_BROKER__SECRET": self.secrets.catalog_broker,
            "CATALOG_SERVICE_CREDENTIALS": json.dumps({READER: self.secrets.reader}),
        }
        if self.isolation is not None:
            env["CATALOG_REDIS_SCOPE"] = self.isolation
        return ChildSpec("catalog", [*_python("peepers_catalog"), "worker"], env)

    def messages(self) -> ChildSpec:
        env = {
            "MESSAGES_HTTP_HOST": LOOPBACK,
            "MESSAGES_HTTP_PORT": str(self.ports.messages),
            "MESSAGES_APP_ID": self.messages_group,
            "MESSAGES_ML__BASE_URL": self.sandbox_url,
            "MESSAGES_ML__APP_ID": str(DEMO_APP_ID),
            "MESSAGES_ML__CLIENT_SECRET": DEMO_CLIENT_SECRET,
            "MESSAGES_ML__APP_LIMIT": json.dumps(
                {"amount": self.ml_requests_per_minute, "per_s": 60}
            ),
            "MESSAGES_TOKEN_BROKER__URL": self.auth_url,
            "MESSAGES_TOKEN_BROKER__SERVICE": "messages",
            "MESSAGES_TOKEN_BROKER__SECRET": self.secrets.messages_broker,
            "MESSAGES_SERVICE_CREDENTIALS": json.dumps({READER: self.secrets.reader}),
        }
        if self.isolation is not None:
            env["MESSAGES_REDIS_SCOPE"] = self.isolation
        return ChildSpec("messages", [*_python("peepers_messages"), "worker"], env)


def _python(module: str) -> list[str]:
    return [sys.executable, "-m", module]
