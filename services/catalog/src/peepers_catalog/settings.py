from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from peepers_common.consumer import ConsumerSettings
from peepers_common.ml.broker_tokens import TokenBrokerSettings
from peepers_common.rebuild import GuardOptions
from peepers_common.settings import KafkaSettings, MlApiSettings, RedisSettings


class SyncSettings(BaseModel):
    chunk: int = Field(default=200, ge=20)
    apply_concurrency: int = Field(default=20, ge=1)


class AuditSettings(BaseModel):
    """The drift auditor (peepers_catalog.audit): a share of the ML budget, at most."""

    share: float = Field(default=0.02, ge=0, le=1)  # 0 turns it off
    batch: int = Field(default=20, ge=1, le=20)  # items per sample: one multiget
    # Items ML changed this recently are not audited: their webhook is likely in flight.
    grace_s: float = Field(default=30.0, ge=0)


class Settings(ConsumerSettings):
    """The catalog service's settings, from `CATALOG_*` variables (e.g. `CATALOG_REDIS__URL`).

    The consumer settings (retry, batches, group, session timeout, topic prefix, Redis
    scope) come from `ConsumerSettings`.
    """

    model_config = SettingsConfigDict(env_prefix="CATALOG_", env_nested_delimiter="__")

    http_host: str = "0.0.0.0"  # noqa: S104 - a pod serves on all its interfaces
    http_port: int = 8083
    kafka: KafkaSettings = KafkaSettings(client_id="peepers-catalog")
    redis: RedisSettings = RedisSettings(username="catalog")
    ml: MlApiSettings = MlApiSettings()
    token_broker: TokenBrokerSettings = TokenBrokerSettings(service="catalog")
    sync: SyncSettings = SyncSettings()
    # How the worker notices a lost cache and rebuilds it (peepers_common.rebuild).
    rebuild: GuardOptions = GuardOptions()
    audit: AuditSettings = AuditSettings()
    app_id: str = "peepers-catalog"
    # Which agents this process runs (one image, several roles): "all" of them, the
    # "items" webhooks (and their retries), or the "sync" of sellers' full syncs (seller
    # events and their retries). A split deployment runs one "sync" process beside the
    # "items" ones, so that a huge seller's sync does not share their event loop, Kafka
    # producer and Redis connection (docs/catalog.md). The "sync" role consumes as group
    # ``<app_id>-sync``: the two roles subscribe to different topics.
    role: Literal["all", "items", "sync"] = "all"
    # Services allowed to call the read API: name -> shared secret (HTTP Basic), as at auth.
    service_credentials: dict[str, SecretStr] = Field(default_factory=dict)
