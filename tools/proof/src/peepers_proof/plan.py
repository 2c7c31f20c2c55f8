"""What a proof run starts: each child's command line and environment.

The services' commands and environments are devstack's (`peepers_devstack.plan.Plan`),
with what keeps the run to itself added on top:

- its own Redis server (``redis-server`` on a free port, no persistence, one ACL user
  per service as ``scripts/stack`` makes them), so a ``FLUSHALL`` or a restart touches
  nobody else's data;
- with ``own_broker``, its own Kafka broker (`peepers_proof.broker`), so that it may
  be killed; otherwise the shared one;
- its own topics: every registry topic behind a run prefix (``proof-<run>.``), consumer
  groups named after the run, removed again at the end;
- the sandbox with many sellers in a process of its own (`peepers_proof.sandbox_host`),
  and auth on the prefixed topics (`peepers_proof.auth_host`);
- ``workers`` processes each of catalog, orders and messages, one consumer group per
  service; the catalog's are its item processes (``CATALOG_ROLE=items``), beside one
  sync process (``catalog-sync``, ``CATALOG_ROLE=sync``, niced) as devstack runs it.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from peepers_devstack.plan import LOOPBACK, ChildSpec, Plan, Ports, Secrets, free_port
from peepers_proof.broker import Broker, kafka_libs
from peepers_sandbox.activity import DEFAULT_MIX
from peepers_sandbox.config import (
    DEMO_SELLER_ID,
    ApiConfig,
    AppConfig,
    FaultConfig,
    MarketplaceConfig,
    NotifierConfig,
    RateLimitConfig,
    RateLimitRule,
    SandboxConfig,
)

SERVICES = ("ingest", "auth", "catalog", "orders", "messages")
# How each worker kind is named in its children ("catalog-1", ...).
WORKER_KINDS = ("catalog", "orders", "messages")


def settings_prefix(child: str) -> str:
    """The environment prefix of a service child's settings (``catalog-2`` -> ``CATALOG``).

    The orders mailer runs on the orders service's settings: ``ORDERS_*`` are its own.
    """
    kind = child.split("-")[0]
    return "ORDERS" if kind == "mailer" else kind.upper()


@dataclass(frozen=True)
class Options:
    sellers: int = 20
    items: int = 200
    huge_items: int = 100_000
    orders: int = 30
    workers: int = 2
    rate: float = 50.0
    # Peepers' outbound budget (every service's *_ML__APP_LIMIT); with `enforce_ml_limit`
    # the sandbox refuses (429) what goes over it, counted by the limits check.
    ml_requests_per_minute: int = 60_000
    enforce_ml_limit: bool = False
    # Every ML call this slow (the sandbox's fault latency), as production round trips are.
    ml_latency_ms: int = 0
    # Activity kinds left out of the sandbox's default mix.
    without: tuple[str, ...] = ()
    # Notifier retries: ML's own hour-long schedule would outlast the run.
    retry_gaps_s: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
    seed: int = 42
    ready_timeout_s: float = 120.0
    # A Kafka broker of the run's own (a child like the others: ``kill:kafka``), instead
    # of the shared one, which is never faulted.
    own_broker: bool = False


@dataclass(frozen=True)
class ProofPlan:
    options: Options
    work_dir: Path
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))
    ports: Ports = field(default_factory=lambda: Ports.from_base(0))
    redis_port: int = field(default_factory=free_port)
    kafka_ports: tuple[int, int] = field(default_factory=lambda: (free_port(), free_port()))
    state_port: int = field(default_factory=free_port)
    redis_passwords: dict[str, str] = field(
        default_factory=lambda: {s: secrets.token_urlsafe(18) for s in SERVICES}
    )

    @property
    def run_dir(self) -> Path:
        return self.work_dir / self.run_id

    @property
    def prefix(self) -> str:
        return f"proof-{self.run_id}."

    @property
    def sellers(self) -> list[int]:
        """The sandbox's sellers; the first one is the huge one."""
        return [DEMO_SELLER_ID + i for i in range(self.options.sellers)]

    @property
    def huge_seller(self) -> int:
        return self.sellers[0]

    @property
    def scope(self) -> str:
        """The workers' Redis scope and the suffix of their consumer groups."""
        return f"proof-{self.run_id}"

    @property
    def redis_url(self) -> str:
        return f"redis://{LOOPBACK}:{self.redis_port}/0"

    @property
    def broker(self) -> Broker | None:
        """The run's own broker (``own_broker``), storage under the run's directory."""
        if not self.options.own_broker:
            return None
        libs = kafka_libs()
        if libs is None:
            msg = "no Kafka jars in .cache/kafka (scripts/stack fetches them)"
            raise FileNotFoundError(msg)
        return Broker(self.run_dir / "kafka", libs, *self.kafka_ports)

    @property
    def state_url(self) -> str:
        return f"http://{LOOPBACK}:{self.state_port}"

    @property
    def devstack(self) -> Plan:
        secrets_file = self.run_dir / "secrets.json"
        return Plan(
            ports=self.ports,
            secrets=Secrets.load_or_create(secrets_file),
            spool_dir=self.run_dir / "ingest-spool",
            items=self.options.items,
            ml_requests_per_minute=self.options.ml_requests_per_minute,
            seller_id=self.huge_seller,
            isolation=self.scope,
        )

    def worker_ports(self, kind: str) -> list[int]:
        first = {"catalog": self.ports.catalog, "orders": self.ports.orders}.get(
            kind, self.ports.messages
        )
        return [first, *(free_port() for _ in range(self.options.workers - 1))]

    def sandbox_config(self) -> SandboxConfig:
        base = self.devstack
        o = self.options
        return SandboxConfig(
            host=LOOPBACK,
            port=self.ports.sandbox,
            apps=[AppConfig(callback_url=base.webhook_url, redirect_uris=[base.redirect_uri])],
            marketplace=MarketplaceConfig(
                seed=o.seed,
                sellers=o.sellers,
                items_per_seller=o.items,
                orders_per_seller=o.orders,
            ),
            api=ApiConfig(auto_approve=True),
            faults=FaultConfig(latency_ms=o.ml_latency_ms),
            rate_limits=RateLimitConfig(rules=self._ml_limits()),
            activity_mix={k: w for k, w in DEFAULT_MIX.items() if k not in o.without},
            # Off until every seller is connected and synced (Runner.connect).
            notifier=NotifierConfig(
                enabled=False, retry_gaps_s=list(o.retry_gaps_s), attempt_log_size=5_000_000
            ),
        )

    def _ml_limits(self) -> list[RateLimitRule]:
        """The sandbox's default rules, plus the app's whole budget per minute if enforced."""
        rules = RateLimitConfig().rules
        if self.options.enforce_ml_limit:
            rules.append(RateLimitRule(family="*", per_minute=self.options.ml_requests_per_minute))
        return rules

    def children(self) -> list[ChildSpec]:
        """In start order (stopped in reverse)."""
        broker = self.broker
        return [
            *([ChildSpec("kafka", broker.command(), {})] if broker is not None else []),
            self.redis(),
            self.mail_sink(),
            self.sandbox(),
            self.auth(),
            self.ingest(),
            *(spec for kind in WORKER_KINDS for spec in self.workers(kind)),
            self.mailer(),
        ]

    def redis(self) -> ChildSpec:
        binary = shutil.which("redis-server")
        if binary is None:
            msg = "redis-server is not installed (scripts/stack installs it)"
            raise FileNotFoundError(msg)
        data = self.run_dir / "peepers_redis"
        data.mkdir(parents=True, exist_ok=True)
        argv = [binary, "--bind", LOOPBACK, "--port", str(self.redis_port),
                "--save", "", "--appendonly", "no", "--dir", str(data)]  # fmt: skip
        for service, password in self.redis_passwords.items():
            # The shared stack's rule (scripts/stack redis_acls); the default user stays
            # open for the harness itself (FLUSHALL, restarts, reading the mirrors).
            argv += ["--user", service, "on", f">{password}", f"~{service}:*", "~ratelimit:*",
                     f"&{service}:*", "+@all", "-@dangerous", "-@admin"]  # fmt: skip
        return ChildSpec("redis", argv, {})

    def mail_sink(self) -> ChildSpec:
        return self.devstack.mail_sink()

    def sandbox(self) -> ChildSpec:
        config = self.run_dir / "sandbox.json"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(self.sandbox_config().model_dump_json())
        argv = [sys.executable, "-m", "peepers_proof.sandbox_host", "--config", str(config),
                "--state-port", str(self.state_port), "--huge-seller", str(self.huge_seller),
                "--huge-items", str(max(self.options.huge_items, self.options.items))]  # fmt: skip
        return ChildSpec("sandbox", argv, {})

    def _service_env(self, service: str) -> dict[str, str]:
        """The run's Redis as the service's ACL user; the run's broker when it has one."""
        up = service.upper()
        broker = self.broker
        return {
            f"{up}_REDIS__URL": self.redis_url,
            f"{up}_REDIS__USERNAME": service,
            f"{up}_REDIS__PASSWORD": self.redis_passwords[service],
            **({f"{up}_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap} if broker else {}),
        }

    def auth(self) -> ChildSpec:
        spec = self.devstack.auth()
        argv = [sys.executable, "-m", "peepers_proof.auth_host", "--topic-prefix", self.prefix]
        return ChildSpec("auth", argv, {**spec.env, **self._service_env("auth")})

    def ingest(self) -> ChildSpec:
        spec = self.devstack.ingest()
        env = {
            **spec.env,
            **self._service_env("ingest"),
            "INGEST_TOPIC_PREFIX": self.prefix,
            "INGEST_RECONCILE_SELLER_IDS": json.dumps(self.sellers),
            # The notifier's bursts come from one address (loopback).
            "INGEST_RATE_LIMIT_PER_IP_PER_S": "5000",
        }
        return dataclasses.replace(spec, env=env)

    def mailer(self) -> ChildSpec:
        """The orders mailer (its own process since issue 14), on the orders' settings."""
        orders = self.workers("orders")[0]
        env = {**orders.env, "ORDERS_HTTP_PORT": str(self.ports.mailer)}
        return ChildSpec("mailer", [*orders.argv[:-1], "mailer"], env)

    def workers(self, kind: str) -> list[ChildSpec]:
        base = self.devstack
        spec = {"catalog": base.catalog, "orders": base.orders, "messages": base.messages}[kind]()
        up = kind.upper()
        env = {
            **spec.env,
            **self._service_env(kind),
            f"{up}_TOPIC_PREFIX": self.prefix,
            f"{up}_ML__BACKOFF_INITIAL_S": "0.1",
            f"{up}_ML__BACKOFF_MAX_S": "2",
            f"{up}_RETRY__PARK_DELAYS_S": "[1.0, 2.0, 4.0, 8.0, 16.0, 30.0]",
        }
        if kind == "orders":
            # The sandbox seeds its history about 550 days before now.
            env["ORDERS_BACKFILL__DAYS"] = "1000"
            env["ORDERS_SMTP__TIMEOUT_S"] = "2"
            env["ORDERS_MAIL__RETRY__PARK_DELAYS_S"] = json.dumps([1.0, 2.0, 4.0] + [5.0] * 60)
        specs = [
            ChildSpec(f"{kind}-{i + 1}", spec.argv, {**env, f"{up}_HTTP_PORT": str(port)})
            for i, port in enumerate(self.worker_ports(kind))
        ]
        if kind == "catalog":
            # devstack's split: ``workers`` item processes, one sync process at a lower
            # CPU priority (docs/catalog.md, Full sync).
            sync = base.catalog_sync()
            changed = {k: v for k, v in sync.env.items() if spec.env.get(k) != v}
            specs.append(dataclasses.replace(sync, env={**env, **changed}))
        return specs
