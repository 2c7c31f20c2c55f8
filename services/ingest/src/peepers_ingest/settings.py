from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

from peepers_common.settings import KafkaSettings, RedisSettings


class Settings(BaseSettings):
    """The ingest service's settings, from `INGEST_*` variables (e.g. `INGEST_REDIS__URL`)."""

    model_config = SettingsConfigDict(env_prefix="INGEST_", env_nested_delimiter="__")

    http_port: int = 8080
    log_level: str = "INFO"
    kafka: KafkaSettings = KafkaSettings(client_id="peepers-ingest")
    redis: RedisSettings = RedisSettings(username="ingest")
