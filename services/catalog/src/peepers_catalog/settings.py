from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from peepers_common.settings import KafkaSettings, RedisSettings


class Settings(BaseSettings):
    """The catalog service's settings, from `CATALOG_*` variables (e.g. `CATALOG_REDIS__URL`)."""

    model_config = SettingsConfigDict(env_prefix="CATALOG_", env_nested_delimiter="__")

    http_port: int = 8083
    log_level: str = "INFO"
    kafka: KafkaSettings = KafkaSettings(client_id="peepers-catalog")
    redis: RedisSettings = RedisSettings(username="catalog")
    # Services allowed to call the read API: name -> shared secret (HTTP Basic), as at auth.
    service_credentials: dict[str, SecretStr] = Field(default_factory=dict)
