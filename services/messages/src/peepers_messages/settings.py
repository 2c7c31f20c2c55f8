from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

from peepers_common.settings import KafkaSettings, RedisSettings


class Settings(BaseSettings):
    """The messages service's settings, from `MESSAGES_*` variables (e.g. `MESSAGES_REDIS__URL`)."""

    model_config = SettingsConfigDict(env_prefix="MESSAGES_", env_nested_delimiter="__")

    http_port: int = 8084
    log_level: str = "INFO"
    kafka: KafkaSettings = KafkaSettings(client_id="peepers-messages")
    redis: RedisSettings = RedisSettings(username="messages")
