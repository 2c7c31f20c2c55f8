"""The seller web app's settings (``AUTH_WEB_*``), separate from the auth process's.

The web process is internet-facing, so this class has no field for the token keys, the
ML client secret or the broker's service credentials: a web pod cannot be configured
with them by mistake. It reads sessions as its own Redis ACL user (``auth-web``, GET on
``auth:session:*`` only) and calls the read APIs with its own service credential.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from peepers_common.settings import KafkaSettings, RedisSettings

Language = Literal["pt-BR", "en"]


class ReadApi(BaseModel):
    """One service's HTTP read API; ``None`` as a whole in settings means "not deployed"."""

    base_url: str
    timeout_s: float = Field(default=3.0, gt=0)


class WebSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AUTH_WEB_", env_nested_delimiter="__")

    http_host: str = "0.0.0.0"  # noqa: S104 - a pod serves on all its interfaces
    http_port: int = 8085
    log_level: str = "INFO"
    # Where sellers reach the pages: https turns the cookie's Secure flag on, and it is the
    # only Origin a state-changing request may come from.
    public_base_url: str = "http://localhost:8085"
    # Where the auth process's pages are (login, logout, disconnect live there).
    auth_base_url: str = "http://localhost:8081"
    redis: RedisSettings = RedisSettings(username="auth-web")
    kafka: KafkaSettings = KafkaSettings(client_id="peepers-auth-web")

    # This process's name and secret towards the read APIs (HTTP Basic). The read APIs list
    # it among their service credentials; the token broker does not.
    service_name: str = "web"
    service_secret: SecretStr = SecretStr("")
    catalog: ReadApi | None = None
    orders: ReadApi | None = None
    messages: ReadApi | None = None

    default_language: Language = "pt-BR"
    # The site (and so the time zone and currency) shown until the seller's own is known.
    default_site: str = "MLB"

    # Live updates: how far back a starting replica reads the domain topics, which is also
    # how long every replica keeps an event, and at most how many per seller: a page that
    # reconnects (Last-Event-ID) to any replica within that window gets what it missed.
    live_replay_s: int = Field(default=600, ge=10)
    live_buffer_per_seller: int = Field(default=500, ge=10)
    live_heartbeat_s: float = Field(default=15.0, gt=0)
    # How long a page that connects while this replica is still reading its replay window
    # waits for it before being served (and told to reload if its Last-Event-ID is unknown).
    live_catch_up_wait_s: float = Field(default=10.0, ge=0)

    @property
    def cookie_secure(self) -> bool:
        return self.public_base_url.startswith("https://")
