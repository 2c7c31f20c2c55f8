from __future__ import annotations

from typing import Final

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from peepers_common.settings import KafkaSettings, MlApiSettings, RedisSettings

# ML's authorization hosts per site (FACTS.md 2.1, from ML's own SDK configuration).
ML_AUTH_BASE_URLS: Final = {
    "MLA": "https://auth.mercadolibre.com.ar",
    "MLB": "https://auth.mercadolivre.com.br",
    "MCO": "https://auth.mercadolibre.com.co",
    "MCR": "https://auth.mercadolibre.com.cr",
    "MEC": "https://auth.mercadolibre.com.ec",
    "MLC": "https://auth.mercadolibre.cl",
    "MLM": "https://auth.mercadolibre.com.mx",
    "MLU": "https://auth.mercadolibre.com.uy",
    "MLV": "https://auth.mercadolibre.com.ve",
    "MPA": "https://auth.mercadolibre.com.pa",
    "MPE": "https://auth.mercadolibre.com.pe",
    "MPT": "https://auth.mercadolibre.com.pt",
    "MRD": "https://auth.mercadolibre.com.do",
}


class OAuthSettings(BaseModel):
    """The browser side of ML's OAuth for the application in ``AUTH_ML__APP_ID``."""

    # Must equal the registered redirect URI byte for byte: ML refuses anything else.
    redirect_uri: str = "http://localhost:8081/auth/callback"
    # Site -> authorization host; point them at the sandbox to log in locally.
    auth_base_urls: dict[str, str] = Field(default_factory=lambda: dict(ML_AUTH_BASE_URLS))
    default_site: str = "MLB"

    @field_validator("auth_base_urls")
    @classmethod
    def _sites_upper(cls, value: dict[str, str]) -> dict[str, str]:
        return {site.upper(): url.rstrip("/") for site, url in value.items()}


class Settings(BaseSettings):
    """The auth service's settings, from `AUTH_*` variables (e.g. `AUTH_REDIS__URL`)."""

    model_config = SettingsConfigDict(env_prefix="AUTH_", env_nested_delimiter="__")

    http_host: str = "0.0.0.0"  # noqa: S104 - a pod serves on all its interfaces
    http_port: int = 8081
    log_level: str = "INFO"
    kafka: KafkaSettings = KafkaSettings(client_id="peepers-auth")
    redis: RedisSettings = RedisSettings(username="auth")
    # ML's API (token endpoint, /users/me), the app id and its client secret.
    ml: MlApiSettings = MlApiSettings()
    oauth: OAuthSettings = OAuthSettings()

    # Fernet keys (urlsafe base64 of 32 bytes), newest first: the first encrypts, every
    # key decrypts, so a key is rotated by prepending a new one and dropping the old one
    # after `python -m peepers_auth rotate-keys` has re-encrypted every record.
    token_keys: list[SecretStr] = Field(default_factory=list)
    # Services allowed to call the internal token API: name -> shared secret (HTTP Basic).
    service_credentials: dict[str, SecretStr] = Field(default_factory=dict)

    # Where sellers reach this service; decides the cookie's Secure flag (https) and the
    # Origin a state-changing form post must come from.
    public_base_url: str = "http://localhost:8081"
    # Where a completed login sends the seller: the seller web app's pages when they are
    # deployed (AUTH_WEB_*, docs/web.md), auth's own small dashboard otherwise.
    dashboard_url: str = "/auth/dashboard"
    login_state_ttl_s: int = Field(default=600, ge=30, le=3600)
    session_ttl_s: int = Field(default=8 * 3600, ge=60)
    # A token expiring within this margin is refreshed before it is handed out, so a
    # caller never receives one that dies in flight.
    refresh_margin_s: int = Field(default=300, ge=0)
    # Longer than an ML token request can take, so a lock never expires under a live
    # refresh; the version check (fencing) still guards the write if it does.
    refresh_lock_ttl_s: float = Field(default=30.0, gt=0)
    # How long a caller waits for another replica's refresh before answering 503.
    refresh_wait_s: float = Field(default=20.0, gt=0)
    # How often the sellers' view is checked for a loss (its epoch marker) besides every
    # read that finds no seller; a lost view is restored from the changelog.
    view_check_every_s: float = Field(default=10.0, gt=0)
    # How often the sellers who must log in again are counted from the view (the gauge
    # peepers_auth_sellers_reauth_required, which PeepersAuthSellersNeedReauth watches).
    status_count_every_s: float = Field(default=60.0, gt=0)

    @property
    def refresh_permit_wait_s(self) -> float:
        """How long a refresh may wait for its outbound permit, inside its lock.

        What the lock's ttl leaves after the request's own timeouts, less a second: a
        permit that came later would spend the refresh token after the lock lapsed,
        while another replica holding it by then spends the same one.
        """
        spare = self.refresh_lock_ttl_s - self.ml.connect_timeout_s - self.ml.read_timeout_s
        return max(spare - 1.0, 0.0)

    @model_validator(mode="after")
    def _lock_outlives_a_refresh(self) -> Settings:
        if self.refresh_lock_ttl_s <= self.ml.read_timeout_s + self.ml.connect_timeout_s:
            msg = "refresh_lock_ttl_s must exceed ML's connect + read timeouts"
            raise ValueError(msg)
        return self

    @property
    def cookie_secure(self) -> bool:
        return self.public_base_url.startswith("https://")
