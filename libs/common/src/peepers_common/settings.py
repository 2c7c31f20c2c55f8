"""Settings groups shared by every service.

Each service has one ``Settings(BaseSettings)`` with its own env prefix (``INGEST_``,
``CATALOG_``, ...) and nests these groups, so the variables read like
``CATALOG_REDIS__URL`` and ``INGEST_KAFKA__BOOTSTRAP_SERVERS``. Only ``settings.py``
modules read the environment; everything else receives a built settings object.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseModel):
    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "peepers"
    # Replication factor for topics created by `peepers-topics ensure`: 1 on the local
    # single-node broker, 3 in production (with min.insync.replicas=2).
    replication_factor: int = Field(default=1, ge=1)
    request_timeout_ms: int = Field(default=10_000, ge=100)


class RedisSettings(BaseModel):
    url: str = "redis://127.0.0.1:6379/0"
    # The service's ACL user (one per service, confined to `<service>:*`).
    username: str | None = None
    password: SecretStr | None = None
    socket_timeout_s: float = Field(default=2.0, gt=0)


class MlLimit(BaseModel):
    """At most `amount` requests per `per_s` seconds, shared by every replica."""

    amount: int = Field(ge=1)
    per_s: int = Field(ge=1)


class MlApiSettings(BaseModel):
    """How services reach Mercado Libre (or the sandbox: change the URLs, nothing else)."""

    base_url: str = "https://api.mercadolibre.com"
    app_id: int = 0
    client_secret: SecretStr = SecretStr("")
    connect_timeout_s: float = Field(default=3.0, gt=0)
    read_timeout_s: float = Field(default=10.0, gt=0)
    # Total time one call may take, retries and waits for our own limiter included; a
    # permit granted at its end still sends its request (at most read_timeout_s more).
    call_budget_s: float = Field(default=60.0, gt=0)
    backoff_initial_s: float = Field(default=1.0, gt=0)
    backoff_max_s: float = Field(default=16.0, gt=0)
    max_connections: int = Field(default=64, ge=1)
    multiget_concurrency: int = Field(default=8, ge=1)
    # Outbound limits. ML publishes none but messaging's 500 rpm; these defaults stay under
    # what integrators report (5-7 req/s per app). Families: users, items, orders,
    # shipments, questions, answers, messages (reads), messages_write (POST/PUT), claims,
    # missed_feeds, oauth. Messaging reads and writes have 500 rpm each (FACTS.md 5.2).
    app_limit: MlLimit | None = MlLimit(amount=300, per_s=60)
    seller_limit: MlLimit | None = None
    family_limits: dict[str, MlLimit] = Field(
        default_factory=lambda: {
            "messages": MlLimit(amount=500, per_s=60),
            "messages_write": MlLimit(amount=500, per_s=60),
        }
    )
    # The shared budget's scope (``ratelimit:<scope>:<app_id>:...``). Every process of the
    # app must name the same one, with the same limits, or its requests are budgeted
    # apart from the others' while ML counts them together. None: the service's own
    # (auth and ingest: "ml", or their test scope; the consumers: their REDIS_SCOPE).
    limiter_scope: str | None = None


class StackSettings(BaseSettings):
    """Operator settings for tools that act on the whole stack (topic admin, tests).

    Read from ``PEEPERS_*`` variables, e.g. ``PEEPERS_KAFKA__BOOTSTRAP_SERVERS``; these
    connect as Redis's default user, which exists for local development and operations.
    """

    model_config = SettingsConfigDict(env_prefix="PEEPERS_", env_nested_delimiter="__")

    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
