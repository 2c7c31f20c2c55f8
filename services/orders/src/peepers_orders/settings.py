from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

from peepers_common.settings import KafkaSettings, RedisSettings


class Settings(BaseSettings):
    """The orders service's settings, from `ORDERS_*` variables (e.g. `ORDERS_REDIS__URL`)."""

    model_config = SettingsConfigDict(env_prefix="ORDERS_", env_nested_delimiter="__")

    http_port: int = 8082
    log_level: str = "INFO"
    kafka: KafkaSettings = KafkaSettings(client_id="peepers-orders")
    redis: RedisSettings = RedisSettings(username="orders")
