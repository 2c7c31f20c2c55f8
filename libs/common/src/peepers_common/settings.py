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


class StackSettings(BaseSettings):
    """Operator settings for tools that act on the whole stack (topic admin, tests).

    Read from ``PEEPERS_*`` variables, e.g. ``PEEPERS_KAFKA__BOOTSTRAP_SERVERS``; these
    connect as Redis's default user, which exists for local development and operations.
    """

    model_config = SettingsConfigDict(env_prefix="PEEPERS_", env_nested_delimiter="__")

    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
