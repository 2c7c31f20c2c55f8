from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

from peepers_common.settings import KafkaSettings, RedisSettings


class Settings(BaseSettings):
    """The auth service's settings, from `AUTH_*` variables (e.g. `AUTH_REDIS__URL`)."""

    model_config = SettingsConfigDict(env_prefix="AUTH_", env_nested_delimiter="__")

    http_port: int = 8081
    log_level: str = "INFO"
    kafka: KafkaSettings = KafkaSettings(client_id="peepers-auth")
    redis: RedisSettings = RedisSettings(username="auth")
