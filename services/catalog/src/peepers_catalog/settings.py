from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from peepers_common.ml.broker_tokens import TokenBrokerSettings
from peepers_common.settings import KafkaSettings, MlApiSettings, RedisSettings


class RetrySettings(BaseModel):
    """A failing record is retried in place, then parked (see peepers_common.consuming)."""

    in_place_attempts: int = Field(default=3, ge=1)
    park_delays_s: list[float] = Field(default_factory=lambda: [10.0, 60.0, 300.0])


class SyncSettings(BaseModel):
    chunk: int = Field(default=200, ge=20)
    apply_concurrency: int = Field(default=20, ge=1)


class RebuildSettings(BaseModel):
    """How the worker notices a lost cache (peepers_common.rebuild.CacheGuard)."""

    check_every_s: float = Field(default=5.0, gt=0)
    miss_check_every_s: float = Field(default=0.0, ge=0)
    lease_s: float = Field(default=30.0, gt=0)
    retry_after_s: float = Field(default=10.0, gt=0)


class AuditSettings(BaseModel):
    """The drift auditor (peepers_catalog.audit): a share of the ML budget, at most."""

    share: float = Field(default=0.02, ge=0, le=1)  # 0 turns it off
    batch: int = Field(default=20, ge=1, le=20)  # items per sample: one multiget


class Settings(BaseSettings):
    """The catalog service's settings, from `CATALOG_*` variables (e.g. `CATALOG_REDIS__URL`)."""

    model_config = SettingsConfigDict(env_prefix="CATALOG_", env_nested_delimiter="__")

    http_host: str = "0.0.0.0"  # noqa: S104 - a pod serves on all its interfaces
    http_port: int = 8083
    log_level: str = "INFO"
    kafka: KafkaSettings = KafkaSettings(client_id="peepers-catalog")
    redis: RedisSettings = RedisSettings(username="catalog")
    ml: MlApiSettings = MlApiSettings()
    token_broker: TokenBrokerSettings = TokenBrokerSettings(service="catalog")
    retry: RetrySettings = RetrySettings()
    sync: SyncSettings = SyncSettings()
    rebuild: RebuildSettings = RebuildSettings()
    audit: AuditSettings = AuditSettings()
    # Item notifications are taken in batches of up to this many (waiting at most
    # batch_within_s for one to fill) and processed concurrently across keys.
    batch_max: int = Field(default=64, ge=1)
    batch_within_s: float = Field(default=0.005, gt=0)
    # The Kafka consumer group; replicas of one deployment share it.
    app_id: str = "peepers-catalog"
    # How fast the group notices a dead replica and hands its partitions on. Kafka's 45 s
    # default leaves a partition unserved that long after a crash; the heartbeat must stay
    # well under the timeout (a third is Kafka's rule of thumb).
    session_timeout_s: float = Field(default=10.0, ge=6.0)
    heartbeat_interval_s: float = Field(default=3.0, gt=0)
    # Prepended to every topic name (tests and side-by-side stacks; empty in production).
    topic_prefix: str = ""
    # Isolates Redis keys under catalog:<scope>: (tests); the rate limiter's too.
    redis_scope: str | None = None
    # Services allowed to call the read API: name -> shared secret (HTTP Basic), as at auth.
    service_credentials: dict[str, SecretStr] = Field(default_factory=dict)
